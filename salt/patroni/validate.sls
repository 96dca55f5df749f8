# Everything else requires this: bad pillar fails here, before a package, a file or a unit changes.
Pillar patroni is valid:
  patroni_debian.pillar_valid: []
