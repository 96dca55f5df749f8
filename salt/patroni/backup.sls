{#- pgBackRest on a member, for pillar patroni:backup (docs/backups.md): its part published in the Salt mine for
    the repository host, /etc/pgbackrest.conf (the repository host's TLS server as its repository, its own TLS
    server for the repository host alone) and Debian's pgbackrest.service. Archiving itself is in the DCS
    (archive_mode, archive_command), written by the config like any dynamic setting. -#}
{%- from tpldir ~ "/map.jinja" import clusters, backup with context %}
include:
  - patroni.service
{%- if backup and clusters %}

This host's part in pgBackRest is published:
  patroni_debian.backup_published:
    - require:
      - sls: patroni.service

pgBackRest is configured:
  patroni_debian.backup_configured:
    - require:
      - patroni_debian: This host's part in pgBackRest is published

pgBackRest's TLS server runs:
  service.running:
    - name: pgbackrest
    - enable: True
    - watch:
      - patroni_debian: pgBackRest is configured
      # a renewed certificate is read when the server starts
      - sls: patroni.tls
{%- endif %}
