{#- One member in or out of the running etcd cluster of pillar etcd, the quorum kept throughout.

    salt-run state.orchestrate orch.etcd_member pillar='{"add": "pg4"}'
    salt-run state.orchestrate orch.etcd_member pillar='{"remove": "pg3"}'                 (pg3's own etcd stops)
    salt-run state.orchestrate orch.etcd_member pillar='{"remove": "pg3", "force": true}'  (leaving fewer than 3)

    add: declare the member in pillar etcd:members with its address first. It is added to the cluster
         (member add, asked of a healthy member), then the etcd formula runs on it alone: its empty data
         directory joins as an existing member; the cluster is gated whole (every declared member healthy).
    remove: take the member out of pillar etcd:members first. It leaves the cluster (member remove, asked of
         another healthy member), then its etcd is stopped and disabled and its data directory moved aside
         (/var/lib/etcd/<cluster>.removed-<time>), so it never starts again on stale data. Refused below 3
         members unless force, and whenever a member is unhealthy (the quorum would be at risk). A member whose
         host is gone: salt <a healthy member> patroni_debian.etcd_member_remove <it> (the cluster side only).
    Every step has failhard: the first refusal stops the change, its comment giving the reason. -#}
{%- set add, remove = pillar.get("add"), pillar.get("remove") %}
{%- set member = add if add is not none else remove %}
{%- set valid = (add is none) != (remove is none) and member is string
                and "\n" not in member and member | regex_match("([A-Za-z0-9_][A-Za-z0-9_.@-]*)$") %}
{%- if not valid %}

The change is one member added or removed:
  test.fail_without_changes:
    - name: "orch.etcd_member needs pillar add: <minion id> or remove: <minion id>, one of the two"
{%- else %}
{%- set etcd_minions = "I@etcd:members:* or L@" ~ member %}

{%- for kind in ("modules", "states") %}

The etcd minions have this release of the {{ kind }}:
  salt.function:
    - name: saltutil.sync_{{ kind }}
    - tgt: "{{ etcd_minions }}"
    - tgt_type: compound
    - expect_minions: True
    - timeout: 15
    - parallel: True
    - failhard: True
{%- endfor %}

The etcd minions have a fresh pillar:
  salt.function:
    - name: saltutil.refresh_pillar
    - tgt: "{{ etcd_minions }}"
    - tgt_type: compound
    - kwarg: {wait: True}
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: The etcd minions have this release of the modules
      - salt: The etcd minions have this release of the states
{%- if add is not none %}

{{ member }} is added to the etcd cluster:
  salt.function:
    - name: patroni_debian.etcd_member_add
    - tgt: [{{ member | json }}]
    - tgt_type: list
    - arg: [{{ member | json }}]
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: The etcd minions have a fresh pillar

{{ member }} runs its etcd member and the cluster is whole:
  salt.state:
    - tgt: [{{ member | json }}]
    - tgt_type: list
    - sls: etcd
    - timeout: 15
    - failhard: True
    - require:
      - salt: {{ member }} is added to the etcd cluster
{%- else %}

{{ member }} leaves the etcd cluster, its data moved aside:
  salt.function:
    - name: patroni_debian.etcd_member_remove
    - tgt: [{{ member | json }}]
    - tgt_type: list
    - arg: [{{ member | json }}]
    - kwarg: {{ {"force": pillar.get("force", False)} | json }}
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: The etcd minions have a fresh pillar

The etcd cluster is whole without {{ member }}:
  salt.function:
    - name: patroni_debian.etcd_wait
    - tgt: "I@etcd:members:*"
    - tgt_type: compound
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: {{ member }} leaves the etcd cluster, its data moved aside
{%- endif %}
{%- endif %}
