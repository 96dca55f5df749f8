{#- The member's TLS files, from pillar patroni:tls (see pillar.example):
    ca_server: the CA's key and certificate on that minion (made when missing), and on every member a key that
    never leaves it and a certificate the CA server signs through Salt's x509 module (peer communication and the
    CA server's signing policy patroni_debian: README, "Security"), renewed when fewer than days_remaining days
    are left; Patroni is then reloaded (service.sls watches this file), never restarted.
    ca_file, cert_file, key_file: the user's own PKI, used as it is; this file only checks it is there. -#}
{%- from tpldir ~ "/map.jinja" import tls, valid with context %}
include:
  - patroni.package
  - patroni.ca
{%- if not valid %}
{#- nothing to say: "Pillar patroni is valid" says what is wrong #}
{%- elif not tls %}

# Said in every run: without patroni:tls the REST API and replication travel unencrypted.
Patroni's REST API and replication are not encrypted:
  test.show_notification:
    - text: >-
        pillar patroni:tls is not set: the REST API (switchover, restart, reinitialize, PATCH /config) is served
        over plain http, and replication and pg_rewind connect unverified; see the README's section Security
{%- elif tls.ca_server is defined %}

# Readable by PostgreSQL and Patroni (group postgres, which the packages create), by nobody else.
The member's TLS key exists:
  x509.private_key_managed:
    - name: {{ tls.key_file | json }}
    - algo: ec
    - keysize: 256
    - user: root
    - group: postgres
    - mode: "0640"
    - makedirs: True
    - dir_mode: "0755"
    # Salt 3008.4's x509 states write through state.single, which may meet a collected channel closing its
    # event loop mid-copy (tornado: 'dictionary keys changed during iteration', CI31): a second try succeeds
    - retry: {attempts: 2, interval: 1}
    - require:
      - sls: patroni.package

The member's certificate is current:
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
      - x509: The member's TLS key exists
{%-   if tls.ca_server == grains.id %}
      - x509: The cluster CA's certificate exists
{%-   else %}
      - patroni_debian: The cluster CA's certificate is here
{%-   endif %}
{%- else %}
{%-   for key in ("ca_file", "cert_file", "key_file") %}

The TLS file {{ key }} is present:
  file.exists:
    - name: {{ tls[key] | json }}
{%-   endfor %}
{%- endif %}
