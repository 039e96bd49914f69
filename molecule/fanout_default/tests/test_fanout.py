"""Model fan-out through the fleet's swarm: a GGUF model and a registry model imported and
answering on every host, the registry read for the large layer by the seed alone, a registry
blob that is not what its manifest says refused, a peer killed mid-transfer, a corrupted
piece from a rogue peer, nothing left afterwards. The tests walk one scenario in file order."""

import hashlib
import json
import subprocess
import sys
import threading
import time

import testinfra
from lab_checks import project_dir, run_playbook

sys.path.insert(0, str(project_dir() / "collections"))

from ansible_collections.localllm.fleet.plugins.module_utils import fleet_swarm

HOSTS = {"fanout-a": "10.89.42.240", "fanout-b": "10.89.42.241", "fanout-c": "10.89.42.242"}
MIRROR_DIR = project_dir() / ".lab" / "mirror" / "molecule" / "fanout_default"
MIRROR_URL = "http://mirror:8080/molecule/fanout_default"
SWARM = "/var/cache/localllm-fleet/swarm"
MODELS = "/var/cache/localllm-fleet/models"
MODEL = "fleet/deepseek-r1:1.5b"
REGISTRY = project_dir() / ".lab" / "mirror" / "v2" / "molecule-fanout" / "deepseek-r1"
REGISTRY_MODEL = "fleet/deepseek-r1:1.5b-swarm"
STORE = "/usr/share/ollama/.ollama/models"


def on(name):
    return testinfra.get_host(f"podman://{name}")


def podman(*args):
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=False)


def make_blob(name, size_mib, seed):
    """A blob on the lab mirror made of a seeded byte stream; its URL and sha256."""
    MIRROR_DIR.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with (MIRROR_DIR / name).open("wb") as out:
        for index in range(size_mib * 32):
            chunk = hashlib.sha512(f"{seed}:{index}".encode()).digest() * 512
            digest.update(chunk)
            out.write(chunk)
    return f"{MIRROR_URL}/{name}", digest.hexdigest()


def swarm_play(url, sha256, dest, limit=None, **settings):
    blobs = [{"url": url, "sha256": sha256, "dest": dest}]
    return run_playbook("swarm.yml", extra_vars={"fanout_blobs": blobs, **settings}, limit=limit)


def leftovers(host):
    """Sockets, processes and units of the swarm still on a host."""
    return {
        "listening": host.run("ss -Hltn 'sport = :6881 or sport = :6969'").stdout.strip(),
        "processes": host.run("pgrep -a 'aria2c|opentracker'").stdout.strip(),
        "units": host.run(
            "systemctl list-units --no-legend --all 'localllm-swarm-*' 'rogue-*'"
        ).stdout.strip(),
    }


def test_the_model_from_the_swarm_is_imported_and_answers(host):
    tags = json.loads(host.check_output("curl -fsS http://127.0.0.1:11434/api/tags"))
    assert MODEL in [m["name"] for m in tags["models"]]
    body = json.dumps({"model": MODEL, "prompt": "Say hello.", "stream": False})
    answer = json.loads(
        host.check_output(f"curl -fsS http://127.0.0.1:11434/api/generate -d '{body}'")
    )
    assert answer["response"].strip()


def test_only_the_seed_read_the_mirror_the_others_fetched_from_the_swarm():
    seed = on("fanout-a").check_output("journalctl -o cat --no-pager")
    assert "localllm.fleet swarm seed" in seed
    assert "localllm.fleet swarm tracker" in seed
    for name in ("fanout-b", "fanout-c"):
        journal = on(name).check_output("journalctl -o cat --no-pager")
        assert "localllm.fleet swarm peer" in journal, name
        assert "localllm.fleet swarm seed" not in journal, name


def model_layer(tag):
    """The sha256 of a registry model's largest layer, and its manifest."""
    manifest = json.loads((REGISTRY / "manifests" / tag).read_text())
    layer = max(manifest["layers"], key=lambda entry: entry["size"])
    return layer["digest"].split(":", 1)[1], manifest


def registry_log():
    """The registry's own access log (the lab mirror's journal) since the scenario began."""
    started = podman("inspect", "-f", "{{.State.StartedAt}}", "fanout-a").stdout.strip()[:19]
    log = podman(
        "exec", "localllm-lab-mirror", "journalctl", "-u", "localllm-lab-mirror.service",
        "--since", started, "-o", "cat", "--no-pager",
    )  # fmt: skip
    assert log.returncode == 0, log.stderr
    return log.stdout.splitlines()


def model_names(host):
    return [
        m["name"]
        for m in json.loads(host.check_output("curl -fsS 127.0.0.1:11434/api/tags"))["models"]
    ]


def test_the_registry_model_is_imported_and_answers_its_large_layer_from_the_swarm(host):
    sha256, _ = model_layer("1.5b-swarm")
    assert REGISTRY_MODEL in model_names(host)
    body = json.dumps({"model": REGISTRY_MODEL, "prompt": "Say hello.", "stream": False})
    answer = json.loads(
        host.check_output(f"curl -fsS http://127.0.0.1:11434/api/generate -d '{body}'")
    )
    assert answer["response"].strip()
    # In Ollama's store under Ollama's name, as Ollama would have written it, verified; the
    # swarm's work directory keeps no second name of it.
    blob = host.file(f"{STORE}/blobs/sha256-{sha256}")
    assert (blob.user, blob.group, blob.mode) == ("ollama", "ollama", 0o644)
    assert blob.sha256sum == sha256
    assert host.check_output(f"stat -c %h {blob.path}") == "1"


def test_only_the_seed_read_the_large_layer_from_the_registry():
    sha256, manifest = model_layer("1.5b-swarm")
    log = registry_log()

    def readers(path):
        return {line.split()[0] for line in log if f'"GET {path}' in line}

    base = "/v2/molecule-fanout/deepseek-r1"
    reads = [line for line in log if f'"GET {base}/blobs/sha256:{sha256}?direct=1' in line]
    print(f"the registry served the 32 MiB layer {len(reads)} time(s): {reads}")
    assert readers(f"{base}/blobs/sha256:{sha256}") == {HOSTS["fanout-a"]}
    assert reads and {line.split()[0] for line in reads} == {HOSTS["fanout-a"]}
    # Every host's own `ollama pull` read the manifest and the small layers from the registry.
    assert readers(f"{base}/manifests/1.5b-swarm") == set(HOSTS.values())
    assert readers(f"{base}/blobs/{manifest['config']['digest']}") == set(HOSTS.values())


def test_a_registry_blob_that_is_not_what_its_manifest_says_is_refused_and_never_imported():
    made = subprocess.run(
        [sys.executable, str(project_dir() / "molecule" / "fanout_default" / "registry_model.py"),
         str(project_dir() / ".lab" / "mirror"), "1.5b-forged", "2", "--forged"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    layer = json.loads(made.stdout)
    model = {
        "name": "deepseek-r1:1.5b-forged",
        "family": "deepseek-r1",
        "parameter_size": "1.5b",
        "size_mib": 1064,
        "num_ctx": 4096,
        "source": "registry",
        "registry": "mirror:8080",
        "registry_namespace": "molecule-fanout",
        "insecure": True,
    }
    run = run_playbook("models.yml", extra_vars={"fanout_models": [model]})
    assert run.rc != 0, run.output[-3000:]
    text = " ".join(run.output.split())
    # The seed names both digests (what came, what the manifest said); its peers name the seed.
    assert f"sha256:{layer['served']}" in text, text[-3000:]
    assert f"sha256:{layer['declared']}" in text, text[-3000:]
    assert "seed fanout-a could not provide" in text, text[-3000:]
    for name in HOSTS:
        peer = on(name)
        assert not [n for n in model_names(peer) if "1.5b-forged" in n], name
        blobs = peer.run(
            f"ls -a {STORE}/blobs; ls -a {STORE}/.localllm-swarm/{layer['declared']} 2>/dev/null"
        ).stdout
        assert layer["declared"] not in blobs and layer["served"] not in blobs, (name, blobs)
        assert "blob" not in blobs.split(), (name, blobs)
        assert leftovers(peer) == {"listening": "", "processes": "", "units": ""}, name


def test_a_bundle_above_the_threshold_comes_through_the_swarm_and_is_imported(tmp_path):
    # A bundle of a model with a 2 MiB layer, exported with scripts/model-bundle from a store
    # laid out as `ollama pull` leaves it.
    made = subprocess.run(
        [sys.executable, str(project_dir() / "molecule" / "fanout_default" / "registry_model.py"),
         str(project_dir() / ".lab" / "mirror"), "1.5b-bundle", "2"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    layer = json.loads(made.stdout)
    store = tmp_path / "models"
    manifest = store / "manifests" / "registry.ollama.ai" / "molecule-fanout" / "deepseek-r1"
    manifest.mkdir(parents=True)
    (manifest / "1.5b-bundle").write_bytes((REGISTRY / "manifests" / "1.5b-bundle").read_bytes())
    (store / "blobs").mkdir()
    for entry in json.loads((manifest / "1.5b-bundle").read_text())["layers"] + [
        json.loads((manifest / "1.5b-bundle").read_text())["config"]
    ]:
        digest = entry["digest"]
        (store / "blobs" / digest.replace(":", "-")).write_bytes(
            (REGISTRY / "blobs" / digest).read_bytes()
        )
    bundle = MIRROR_DIR / "fanout-bundle.tar"
    subprocess.run(
        [sys.executable, str(project_dir() / "scripts" / "model-bundle"), "export", "-q",
         "molecule-fanout/deepseek-r1:1.5b-bundle", "-o", str(bundle), "--models-dir", str(store)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    sha256 = hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert bundle.stat().st_size > 1 << 20
    model = {
        "name": "deepseek-r1:1.5b-bundle",
        "family": "deepseek-r1",
        "parameter_size": "1.5b",
        "size_mib": 1064,
        "num_ctx": 4096,
        "source": "bundle",
        "bundle_model": "molecule-fanout/deepseek-r1:1.5b-bundle",
    }
    run = run_playbook(
        "models.yml",
        extra_vars={
            "fanout_models": [model],
            "ollama_models_bundle": f"{MIRROR_URL}/fanout-bundle.tar",
            "ollama_models_bundle_sha256": f"sha256:{sha256}",
            # The import is what this shows; the model's answer is the smoke test's, above.
            "ollama_models_smoke": False,
            "ollama_models_preload": False,
        },
    )
    assert run.rc == 0, run.output[-3000:]
    unit = f"localllm-swarm-{sha256[:16]}.service"
    assert f"localllm.fleet swarm seed {sha256[:16]}" in on("fanout-a").check_output(
        "journalctl -o cat --no-pager"
    )
    for name in HOSTS:
        peer = on(name)
        assert "fleet/deepseek-r1:1.5b-bundle" in model_names(peer), name
        assert peer.file(f"{STORE}/blobs/sha256-{layer['declared']}").sha256sum == layer["declared"]
        assert peer.file(f"{MODELS}/fanout-bundle.tar").sha256sum == sha256, name
        if name != "fanout-a":
            journal = peer.check_output(f"journalctl -u {unit} -o cat --no-pager")
            assert journal.strip(), name  # it ran the peer unit: fetched from the swarm


def test_nothing_of_the_swarm_is_left_running_or_listening(host):
    assert leftovers(host) == {"listening": "", "processes": "", "units": ""}
    # Debian's own tracker service never ran.
    assert host.service("opentracker").is_enabled is False
    assert host.run("systemctl is-active opentracker").stdout.strip() == "inactive"


def test_a_peer_killed_mid_transfer_resumes_while_the_others_finish():
    url, sha256 = make_blob("killed.bin", 48, "killed")
    unit = f"localllm-swarm-{sha256[:16]}.service"
    dest = f"{MODELS}/killed.bin"
    killed = {}

    def kill_b_mid_transfer():
        b = on("fanout-b")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            size = b.run(f"stat -c %s {SWARM}/{sha256}/blob").stdout.strip()
            if size and int(size) > 4 << 20 and not b.file(f"{SWARM}/{sha256}/blob.status").exists:
                killed["at"] = int(size)
                b.run(f"systemctl kill --signal=SIGKILL {unit}")
                return
            time.sleep(0.5)

    killer = threading.Thread(target=kill_b_mid_transfer)
    killer.start()
    # The seed serves slowly, so the peers trade pieces and b is caught mid-transfer.
    run = swarm_play(url, sha256, dest, fleet_swarm_upload_limit=2 << 20)
    killer.join()
    assert killed, "b finished before it could be killed"
    assert run.rc == 0, run.output[-3000:]
    for name in HOSTS:
        assert on(name).file(dest).sha256sum == sha256, name
    journal = on("fanout-b").check_output(f"journalctl -u {unit} -o cat --no-pager")
    assert "restart counter is at 1" in journal, journal[-2000:]


def test_a_corrupted_piece_from_a_rogue_peer_is_caught_and_never_installed():
    url, sha256 = make_blob("rogue.bin", 40, "rogue")
    dest = f"{MODELS}/rogue.bin"
    # a has the blob first (it alone reads the mirror), then seeds it to c.
    first = swarm_play(url, sha256, dest, limit="fanout-a")
    assert first.rc == 0, first.output[-3000:]
    # b, outside the play, joins the same swarm (the same private torrent: its info hash
    # depends only on the file and the piece size) serving a copy in which every piece has
    # one byte changed: whatever c receives from it is corrupt.
    b = on("fanout-b")
    exponent = fleet_swarm.piece_exponent(40 << 20)
    announce = fleet_swarm.tracker_url(HOSTS["fanout-a"], 6969)
    b.check_output(
        f"rm -rf /root/rogue && mkdir /root/rogue && curl -fsS -o /root/rogue/blob {url}"
        f" && mktorrent -p -l {exponent} -a {announce} -n blob -o /root/rogue/t.torrent"
        " /root/rogue/blob >/dev/null"
    )
    b.check_output(
        "python3 - /root/rogue/blob <<'FLIP'\n"
        "import sys\n"
        "with open(sys.argv[1], 'r+b') as blob:\n"
        f"    for at in range(1000, 40 << 20, {1 << exponent}):\n"
        "        blob.seek(at)\n"
        "        value = blob.read(1)[0]\n"
        "        blob.seek(at)\n"
        "        blob.write(bytes([value ^ 0xFF]))\n"
        "FLIP"
    )
    # What c receives from the rogue, counted on c: every TCP byte from b's address, over the
    # connection c opens to the rogue's port and the one the rogue opens to c (BitTorrent keeps
    # one of the two, whichever the timing picks).
    c = on("fanout-c")
    c.check_output(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null"
        " && nft add table inet fanout_test"
        " && nft add chain inet fanout_test input '{ type filter hook input priority -10; }'"
        " && nft add rule inet fanout_test input"
        f" ip saddr {HOSTS['fanout-b']} meta l4proto tcp counter"
    )
    started = {}

    def start_rogue_when_tracked():
        a = on("fanout-a")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if a.run("systemctl is-active localllm-swarm-tracker.service").rc == 0:
                started["rogue"] = b.run(
                    "systemd-run --unit=rogue-seed --collect /usr/bin/aria2c --no-conf=true"
                    " --dir=/root/rogue --bt-seed-unverified=true --check-integrity=false"
                    " --seed-time=10 --seed-ratio=0.0 --listen-port=6882"
                    f" --interface={HOSTS['fanout-b']} --disable-ipv6=true --enable-dht=false"
                    " --enable-peer-exchange=false --bt-enable-lpd=false"
                    " --bt-tracker-interval=1 --torrent-file=/root/rogue/t.torrent"
                ).rc
                return
            time.sleep(0.5)

    rogue = threading.Thread(target=start_rogue_when_tracked)
    rogue.start()
    # a serves slowly, so c asks the rogue for pieces too.
    run = swarm_play(url, sha256, dest, limit="fanout-a,fanout-c", fleet_swarm_upload_limit=1 << 20)
    rogue.join()
    b.run("systemctl stop rogue-seed.service")
    listing = json.loads(c.check_output("nft -j list table inet fanout_test"))
    c.run("nft delete table inet fanout_test")
    from_rogue = sum(
        expr["counter"]["bytes"]
        for item in listing["nftables"]
        if "rule" in item
        for expr in item["rule"]["expr"]
        if "counter" in expr
    )
    assert started.get("rogue") == 0
    assert run.rc == 0, run.output[-3000:]
    print(f"c received {from_rogue} bytes from the rogue peer, every piece of it corrupt")
    # The rogue's pieces reached c (at least one whole piece) and none of them survived.
    assert from_rogue > 1 << exponent
    assert c.file(dest).sha256sum == sha256


def test_after_every_transfer_nothing_of_the_swarm_is_left(host):
    assert leftovers(host) == {"listening": "", "processes": "", "units": ""}
