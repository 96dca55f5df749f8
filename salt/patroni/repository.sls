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
{%- for scope in plan.stanzas %}
{%-   set version, cluster = scope.split("-", 1) %}

{#- the stanza the cluster archives into (pillar patroni:backup:stanzas): its scope until a restore #}
The stanza {{ plan.current[scope] }} exists:
  patroni_debian.backup_stanza:
    - version: {{ version | json }}
    - cluster: {{ cluster | json }}
    - require:
      - service: pgBackRest's TLS server runs
{%- endfor %}
{%- for timer in plan.get("timers", []) %}

# Scheduled by systemd rather than Salt's scheduler: it runs with the minion or the master down, catches up a run
# missed while the host was off (Persistent), logs to the journal, and shows in systemctl list-timers.
The {{ timer.type }} backups of {{ timer.stanza }} have their service:
  file.managed:
    - name: /etc/systemd/system/{{ timer.unit }}.service
    - mode: "0644"
    - contents: |
        # Written by Salt's patroni_debian formula (pillar patroni:backup:schedule): edits are replaced.
        [Unit]
        Description=pgBackRest {{ timer.type }} backup of {{ timer.stanza }}
        After=network-online.target pgbackrest.service

        [Service]
        Type=oneshot
        User=postgres
        Group=postgres
        ExecStart=/usr/bin/pgbackrest --stanza={{ timer.stanza }} --type={{ timer.type }} backup
    - require:
      - patroni_debian: The stanza {{ timer.stanza }} exists

The {{ timer.type }} backups of {{ timer.stanza }} are timed:
  file.managed:
    - name: /etc/systemd/system/{{ timer.unit }}.timer
    - mode: "0644"
    - contents: |
        # Written by Salt's patroni_debian formula (pillar patroni:backup:schedule): edits are replaced.
        [Unit]
        Description=pgBackRest {{ timer.type }} backups of {{ timer.stanza }}, on schedule

        [Timer]
        OnCalendar={{ timer.calendar }}
        Persistent=true

        [Install]
        WantedBy=timers.target
    - require:
      - file: The {{ timer.type }} backups of {{ timer.stanza }} have their service

systemd has read the {{ timer.type }} backup units of {{ timer.stanza }}:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: The {{ timer.type }} backups of {{ timer.stanza }} have their service
      - file: The {{ timer.type }} backups of {{ timer.stanza }} are timed

The {{ timer.type }} backup timer of {{ timer.stanza }} runs:
  service.running:
    - name: {{ (timer.unit ~ ".timer") | json }}
    - enable: True
    - require:
      - module: systemd has read the {{ timer.type }} backup units of {{ timer.stanza }}
    - watch:
      - file: The {{ timer.type }} backups of {{ timer.stanza }} are timed
{%- endfor %}
{%- for unit in plan.get("stale_timers", []) %}

# A timer the plan no longer has (a stanza a restore left behind, a type pillar dropped) would back a cluster up
# into a stanza it no longer archives into.
The scheduled backups {{ unit }} are stopped:
  service.dead:
    - name: {{ (unit ~ ".timer") | json }}
    - enable: False

The units of the scheduled backups {{ unit }} are gone:
  file.absent:
    - names:
      - /etc/systemd/system/{{ unit }}.timer
      - /etc/systemd/system/{{ unit }}.service
    - require:
      - service: The scheduled backups {{ unit }} are stopped

systemd has forgotten the scheduled backups {{ unit }}:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - file: The units of the scheduled backups {{ unit }} are gone
{%- endfor %}
