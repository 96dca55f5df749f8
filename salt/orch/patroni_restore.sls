{#- Restore of a Patroni cluster from its pgBackRest backups, into the same scope or into a new one beside it
    (docs/backups.md, the runbook).

    salt-run state.orchestrate orch.patroni_restore pillar='{"cluster": "15-main"}'
    salt-run state.orchestrate orch.patroni_restore \
        pillar='{"cluster": "15-main", "target": {"time": "2026-12-03 17:04:05+00"}, "confirm": "15-main"}'
    salt-run state.orchestrate orch.patroni_restore pillar='{"cluster": "15-copy", "stanza": "15-main"}'
    pillar: "cluster" (the scope), "target" ("latest", the default, or {"time": …}, {"name": …}, {"set": …},
    optionally with "timeline"), "confirm" (the scope again: required when the cluster exists, in its DCS or
    as data on a member), "stanza" (the stanza to read, default the one before the stanza the cluster archives
    into: pillar patroni:backup:stanzas must name a fresh one first), "timeout" (seconds the restored leader
    may take, default 600)

      1. every member and the repository host get a fresh pillar and this release of the modules and states;
      2. every member checks the restore (patroni_debian.restore_plan): a fresh stanza to archive into, the
         backup set it starts from, the target inside the archive, the stanza of this cluster's database system,
         the confirmation; nothing has changed when one refuses;
      3. every member stops its Patroni (the leader last, so that no replica takes over) and renames its data
         directory aside, kept (patroni_debian.restore_prepare);
      4. the member with the bootstrap role removes the cluster's keys from the DCS and restores it through
         Patroni's bootstrap (the program's restore: pg-common's metadata, pgBackRest's restore, Patroni's
         recovery to the target), back once it leads and accepts writes on a new timeline
         (patroni_debian.restore_start);
      5. the formula on every member: the others clone from the restored leader, and pgBackRest names the fresh
         stanza; the repository host creates it (patroni.repository), the gate of orch.patroni, a full backup
         into the fresh stanza, the summary.
    Every step has failhard: the first failure stops the restore, its comment naming the minion and the cause. -#}
{%- set scope = pillar.get("cluster", "") | string %}
{%- set roles = "I@patroni:role:bootstrap or I@patroni:role:replica"
                ~ " or G@patroni_role:bootstrap or G@patroni_role:replica" %}
{#- after the plan, the members whose pillar declares the cluster: a restore into a new scope beside another may
    live on some of them (the plan asks every member, and the bootstrap member refuses a scope it does not
    declare); a scope that is no word (a space would end the expression) is refused by the plan first -#}
{%- set declares = "I@patroni:clusters:" ~ (scope if scope and " " not in scope else "-") %}
{%- set members = "( " ~ roles ~ " ) and " ~ declares %}
{%- set bootstrap = "( I@patroni:role:bootstrap or G@patroni_role:bootstrap ) and " ~ declares %}
{%- set repository = "I@patroni:role:backup" %}
{%- set everyone = roles ~ " or " ~ repository %}
{%- set version, name = (scope.split("-", 1) + [""])[:2] %}
{%- set timeout = pillar.get("timeout", 600) %}
{%- set restore = dict(version=version, cluster=name, target=pillar.get("target", "latest"),
                       confirm=pillar.get("confirm"), stanza=pillar.get("stanza")) %}

Members and the repository host have a fresh pillar:
  salt.function:
    - name: saltutil.refresh_pillar
    - tgt: "{{ everyone }}"
    - tgt_type: compound
    - kwarg: {wait: True}
    - expect_minions: True
    - timeout: 15
    - parallel: True
    - failhard: True
{%- for kind in ("modules", "states") %}

Members and the repository host have this release of the {{ kind }}:
  salt.function:
    - name: saltutil.sync_{{ kind }}
    - tgt: "{{ everyone }}"
    - tgt_type: compound
    - expect_minions: True
    - timeout: 15
    - parallel: True
    - failhard: True
{%- endfor %}

Every member finds the restore possible and confirmed:
  salt.function:
    - name: patroni_debian.restore_plan
    - tgt: "{{ roles }}"
    - tgt_type: compound
    - kwarg: {{ restore | json }}
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: Members and the repository host have a fresh pillar
      - salt: Members and the repository host have this release of the modules
      - salt: Members and the repository host have this release of the states

Every member is stopped, its data directory kept aside:
  salt.function:
    - name: patroni_debian.restore_prepare
    - tgt: "{{ members }}"
    - tgt_type: compound
    - kwarg: {{ dict(restore, timeout=120) | json }}
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: Every member finds the restore possible and confirmed

The bootstrap member has restored the cluster and leads it:
  salt.function:
    - name: patroni_debian.restore_start
    - tgt: "{{ bootstrap }}"
    - tgt_type: compound
    - kwarg: {{ dict(restore, timeout=timeout) | json }}
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: Every member is stopped, its data directory kept aside

Every member runs the formula, the others cloning from the restored leader:
  salt.state:
    - tgt: "{{ members }}"
    - tgt_type: compound
    - sls: patroni
    - timeout: 15
    - failhard: True
    - require:
      - salt: The bootstrap member has restored the cluster and leads it

{#- The members' pgBackRest names the fresh stanza once the formula ran: now the repository host serves it, and
    creates it against the restored leader; the restored leader's archiving fails until then, its WAL kept. #}
The repository host has the fresh stanza of the restored cluster:
  salt.state:
    - tgt: "{{ repository }}"
    - tgt_type: compound
    - sls: patroni.repository
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: Every member runs the formula, the others cloning from the restored leader

Every member leads and accepts writes, or streams from the leader on its timeline:
  salt.function:
    - name: patroni_debian.wait_members
    - tgt: "{{ members }}"
    - tgt_type: compound
    - kwarg: {{ dict(clusters=scope, timeout=timeout) | json }}
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: The repository host has the fresh stanza of the restored cluster

A full backup of the restored cluster is in its fresh stanza:
  salt.function:
    - name: patroni_debian.backup
    - tgt: "{{ repository }}"
    - tgt_type: compound
    - arg: [{{ version | json }}, {{ name | json }}]
    - kwarg: {type: full}
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: Every member leads and accepts writes, or streams from the leader on its timeline

Summary of the restored cluster, verified:
  salt.function:
    - name: patroni_debian.summary
    - tgt: "{{ bootstrap }}"
    - tgt_type: compound
    - kwarg: {{ dict(clusters=scope) | json }}
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: A full backup of the restored cluster is in its fresh stanza
