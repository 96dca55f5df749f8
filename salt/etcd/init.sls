{#- The etcd cluster of pillar etcd, the DCS of the Patroni clusters, on the minions pillar etcd:members names:
    Debian's etcd-server with /etc/default/etcd written whole (data in /var/lib/etcd/<cluster>, never the
    package's own one-member cluster), the members started together, then the cluster gated whole. With
    etcd:tls, peers and clients over https with certificates of the CA of patroni:tls: each member has a key of
    its own that user etcd reads (/etc/etcd/tls), and a renewed certificate restarts its member.
    Membership changes of a running cluster: salt-run state.orchestrate orch.etcd_member. -#}
{%- set etcd = pillar.get("etcd") %}
{%- set member = etcd is mapping and etcd.get("members") is mapping and grains.id in etcd.get("members") %}
{%- set tls = salt["patroni_debian.tls_plan"](etcd=True) if member else {} %}
{%- set installed = ("patroni_debian" if opts.get("test") else "pkg") ~ ": etcd's server and client are installed" %}
{%- if tls %}
include:
  - patroni.ca
{%- endif %}
{#- Every minion checks: one that runs a member pillar no longer declares is told so, and changes nothing. #}
Pillar etcd is valid:
  patroni_debian.etcd_pillar_valid: []
{%- if member %}

{#- In a dry run the packages are read from dpkg alone (apt's lists stay as they are) #}
etcd's server and client are installed:
{%- if opts.get("test") %}
  patroni_debian.packages_installed:
{%- else %}
  pkg.installed:
{%- endif %}
    - pkgs: ["etcd-server", "etcd-client"]
    - require:
      - patroni_debian: Pillar etcd is valid
{%- if tls %}

# Readable by etcd (the package's user) and root, by nobody else; it never leaves the member.
etcd member {{ grains.id }}'s TLS key exists:
  x509.private_key_managed:
    - name: {{ tls.key_file | json }}
    - algo: ec
    - keysize: 256
    - user: root
    - group: etcd
    - mode: "0640"
    - makedirs: True
    - dir_mode: "0755"
    # Salt 3008.4's x509 states write through state.single, which may meet a collected channel closing its
    # event loop mid-copy (tornado: 'dictionary keys changed during iteration', CI31): a second try succeeds
    - retry: {attempts: 2, interval: 1}
    - require:
      - {{ installed }}

etcd member {{ grains.id }}'s certificate is current:
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
      - x509: etcd member {{ grains.id }}'s TLS key exists
{%-   if tls.ca_server == grains.id %}
      - x509: The cluster CA's certificate exists
{%-   else %}
      - patroni_debian: The cluster CA's certificate is here
{%-   endif %}
{%- endif %}

etcd member {{ grains.id }} runs and its cluster is whole:
  patroni_debian.etcd_member_running:
    - require:
      - patroni_debian: Pillar etcd is valid
      - {{ installed }}
{%- if tls %}
      - x509: etcd member {{ grains.id }}'s certificate is current
{%- endif %}
{%- endif %}
