{#- The repository host of pillar patroni:backup (pillar patroni:role: backup; docs/backups.md): pgBackRest, its
    key and a certificate from the cluster's CA, its part published in the Salt mine for the members, the
    repository folder, /etc/pgbackrest.conf naming every member the mine has published, Debian's
    pgbackrest.service, and the stanza of each cluster those members run. -#}
{%- set tls = salt["patroni_debian.tls_plan"]() %}
{%- set plan = salt["patroni_debian.backup_plan"]() %}
{%- set installed = ("patroni_debian" if opts.get("test") else "pkg") ~ ": pgBackRest is installed" %}
include:
  - patroni.ca
  - patroni.backup_part

pgBackRest is installed:
{%- if opts.get("test") %}
  patroni_debian.packages_installed:
{%- else %}
  pkg.installed:
{%- endif %}
    - pkgs: ["pgbackrest"]
{%- if tls.get("ca_server") %}

# Readable by pgBackRest's server (run as postgres) and root, by nobody else.
The repository host's TLS key exists:
  x509.private_key_managed:
    - name: {{ tls.key_file | json }}
    - algo: ec
    - keysize: 256
    - user: root
    - group: postgres
    - mode: "0640"
    - makedirs: True
    - dir_mode: "0755"
    # see salt/patroni/tls.sls: Salt 3008.4's x509 states may fail once for a reason of their own
    - retry: {attempts: 2, interval: 1}
    - require:
      - {{ installed }}

The repository host's certificate is current:
  x509.certificate_managed:
    - name: {{ tls.cert_file | json }}
    - ca_server: {{ tls.ca_server | json }}
    - signing_policy: patroni_debian
    - private_key: {{ tls.key_file | json }}
    - CN: {{ tls.CN | json }}
    - subjectAltName: {{ tls.subjectAltName | json }}
    - days_valid: {{ tls.days_valid }}
    - days_remaining: {{ tls.days_remaining }}
    - mode: "0644"
    - retry: {attempts: 20, interval: 3}
    - require:
      - x509: The repository host's TLS key exists
{%-   if tls.ca_server == grains.id %}
      - x509: The cluster CA's certificate exists
{%-   else %}
      - patroni_debian: The cluster CA's certificate is here
{%-   endif %}
{%- endif %}

{%- if plan.path is defined %}

# The package makes its own folder (postgres, 0750); another one the same way.
The repository folder exists:
  file.directory:
    - name: {{ plan.path | json }}
    - user: postgres
    - group: postgres
    - mode: "0750"
    - makedirs: True
    - require:
      - {{ installed }}
{%- endif %}

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
{%- if tls.get("ca_server") %}
      - x509: The repository host's certificate is current
{%- endif %}
{%- for stanza in plan.stanzas %}
{%-   set version, cluster = stanza.split("-", 1) %}

The stanza {{ stanza }} exists:
  patroni_debian.backup_stanza:
    - version: {{ version | json }}
    - cluster: {{ cluster | json }}
    - require:
      - service: pgBackRest's TLS server runs
{%- endfor %}
