"""labctl: the local lab fleet's code, one module per concern (scripts/lab is its entry point).

  common      paths, names and labels; running podman and other commands; LabError
  archive     the distribution archive (and keyring) a base image is bootstrapped from
  images      base images (debootstrap) and the lab overlay (podman build)
  containers  reconciling a container with its definition; waiting for systemd and sshd
  network     the lab network's layout and the egress guard (nftables)
  fleet       the fleet as inventories/lab/hosts.yml defines it; starting its hosts
  keys        the lab's SSH key and the gateway's demo client key in .lab/
  mirror      the mirror host and the publishers (publish.d) that fill it
  prepare     the controller: system packages, kernel limits, the lock
  cli         the `scripts/lab` commands
  aptrepo     signed apt repositories, for the publishers in publish.d

Each module imports only those listed before it (archive names images.ImageSpec only for
type checking). docs/lab.md says why the lab is built this way.
"""
