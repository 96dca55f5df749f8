{#- The cluster's CA, from pillar patroni:tls:ca_server: its key and certificate made on that minion when missing,
    its certificate fetched from there by every other. Included by patroni.tls (the Patroni members' certificates),
    by the etcd formula (its members' certificates, etcd:tls), which may run first or on hosts without a
    Patroni cluster, and by patroni.repository (the repository host of patroni:backup). Nothing is made for a
    pillar that validates neither for Patroni, nor for an etcd over TLS, nor for a repository host. -#}
{%- set tls = salt["patroni_debian.tls_plan"]() %}
{%- set wanted = salt["patroni_debian.formula_clusters"]().valid or salt["patroni_debian.tls_plan"](etcd=True)
                 or salt["patroni_debian.backup_identity"]().get("repository") %}
{%- if tls.get("ca_server") and wanted %}
{%-   set issued = tls.ca_file.rsplit("/", 1)[0] %}
{%-   if tls.ca_server == grains.id %}

# This minion is the cluster's CA: its key never leaves it (root only) and its certificate is made once.
The cluster CA's key exists:
  x509.private_key_managed:
    - name: {{ issued }}/ca.key
    - algo: ec
    - keysize: 256
    - user: root
    - group: root
    - mode: "0600"
    - makedirs: True
    - dir_mode: "0755"
    # Salt 3008.4's x509 states write through state.single, which may meet a collected channel closing its
    # event loop mid-copy (tornado: 'dictionary keys changed during iteration', CI31): a second try succeeds
    - retry: {attempts: 2, interval: 1}

The cluster CA's certificate exists:
  x509.certificate_managed:
    - name: {{ tls.ca_file | json }}
    - signing_private_key: {{ issued }}/ca.key
    - CN: {{ ("Patroni CA on " ~ grains.id) | json }}
    - basicConstraints: "critical, CA:true"
    - keyUsage: "critical, cRLSign, keyCertSign"
    - subjectKeyIdentifier: hash
    - days_valid: 3650
    - days_remaining: 0
    - mode: "0644"
    - retry: {attempts: 2, interval: 1}
    - require:
      - x509: The cluster CA's key exists
{%-   else %}

The cluster CA's certificate is here:
  patroni_debian.ca_certificate_present:
    - name: {{ tls.ca_file | json }}
    - ca_server: {{ tls.ca_server | json }}
    - mode: "0644"
    - makedirs: True
    - dir_mode: "0755"
    # the CA server may be making the CA in this very highstate
    - retry: {attempts: 20, interval: 3}
{%-   endif %}
{%- endif %}
