"""labctl: the local lab fleet's code, one module per concern (scripts/lab is its entry point).

  common      paths, names and labels; running podman and other commands; LabError
  fleet       the fleet as inventories/lab/hosts.yml defines it; starting its hosts
  prepare     the controller: system packages, kernel limits, the lock
  archive     the distribution archive (and keyring) a base image is bootstrapped from
  images      base images (debootstrap) and the lab overlay (podman build)
  network     the lab network's layout and the egress guard (nftables)
  containers  reconciling a container with its definition; waiting for systemd and sshd
  keys        the lab's SSH key and the gateway's demo client key in .lab/
  mirror      the mirror host and the publishers (publish.d) that fill it
  aptrepo     signed apt repositories, for the publishers in publish.d
  cli         the `scripts/lab` commands

docs/lab.md says why the lab is built this way.
"""
