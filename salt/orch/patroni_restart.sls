{#- Rolling restart of the Patroni clusters whose PostgreSQL waits for a restart (pending_restart), e.g. after
    a pillar change to shared_buffers reached the live settings through orch.patroni.

    salt-run state.orchestrate orch.patroni_restart                                   every cluster
    salt-run state.orchestrate orch.patroni_restart pillar='{"cluster": "15-main"}'   one (or a list)
    optional pillar: "timeout" (seconds each member may take to be healthy again, default 300)

    Each cluster is driven by its current leader (patroni_debian.rolling_restart, called on every member; the
    others return at once): replicas one at a time, each gated on streaming again, then a switchover to a gated
    candidate, then the old leader; the primary first when a shared-memory setting decreases. At most one
    member is down at a time; a member that turns unhealthy stops the run with its name and the reason.
    PostgreSQL restarts through Patroni's REST API, never the patroni@ unit (that would cost a failover). -#}
{%- set members = "I@patroni:role:bootstrap or I@patroni:role:replica"
                  ~ " or G@patroni_role:bootstrap or G@patroni_role:replica" %}
{%- set clusters = pillar.get("cluster") %}
{%- set timeout = pillar.get("timeout", 300) %}

Members have this release of the modules:
  salt.function:
    - name: saltutil.sync_modules
    - tgt: "{{ members }}"
    - tgt_type: compound
    - expect_minions: True
    - timeout: 15
    - failhard: True

The rolling restart's arguments are valid:
  salt.function:
    - name: patroni_debian.rollout_arguments
    - tgt: "{{ members }}"
    - tgt_type: compound
    - kwarg: {{ dict(clusters=clusters, timeout=timeout) | json }}
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: Members have this release of the modules

Each cluster's leader restarts its members one at a time:
  salt.function:
    - name: patroni_debian.rolling_restart
    - tgt: "{{ members }}"
    - tgt_type: compound
    - kwarg: {{ dict(clusters=clusters, timeout=timeout) | json }}
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: The rolling restart's arguments are valid
