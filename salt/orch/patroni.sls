{#- Leader-then-replicas rollout of the Patroni clusters declared in pillar, gated on real readiness.

    salt-run state.orchestrate orch.patroni                                   every cluster in the members' pillar
    salt-run state.orchestrate orch.patroni pillar='{"cluster": "15-main"}'   one (or a list, or "15-main,16-x")
    optional pillar: "timeout" (seconds each gate may wait, default 120)

    Members are the minions with a role, targeted as salt/top.sls.example targets them. Everything that depends
    on who leads is asked of the members at run time (this file is rendered before its first step runs):
      0. the etcd of pillar etcd, when declared, runs on its members: on the Patroni members it is part of the
         formula (the first phase starts it on all of them at once); a separate DCS host gets it in a step
         beside the first phase, so that members on both kinds of host start together;
      1. one Salt job on every member and every minion the formula ran a cluster on (grain
         patroni_debian_clusters), etcd's own hosts and the repository host (salt/patroni/rollout.sls): this
         release of the modules and states and a fresh pillar; the arguments checked
         (patroni_debian.rollout_arguments: names exactly as given, a finite timeout) before anything changes; a
         cluster pillar no longer declares left (patroni_debian.leave_undeclared: Patroni stopped and disabled,
         data kept, back once the others no longer list it; refused for a leader); and each member asks the
         formula, in test mode, whether it would change anything there (patroni_debian.rollout_converged). Both
         phases leave out the members that would change nothing (grain patroni_debian_rollout: converged): a
         re-run on converged clusters goes from this step to the gate;
      2. first phase: the formula on those of them that have work in it, each keeping only the clusters it
         goes first in (patroni_debian.leads_rollout: it leads now, or it has the bootstrap role and is no
         replica); back once each such cluster is claimed (led, or its bootstrap under way), while the others
         that said early in the first step (patroni_debian.rollout_goes_early: packages not all installed, TLS
         or backups in pillar) install packages and the program, and with pillar etcd every member
         starts its etcd. A replica with its packages in place is left out: it waits for the second phase;
      3. second phase: the formula on every such member, all at once, back once Patroni runs. A replica without
         data starts Patroni only once the DCS shows a leader running as the primary (wait_leader_in_dcs), so
         it clones at once and never races the bootstrap; its Salt run overlaps the leader's bootstrap, and a
         member's clusters clone side by side;
      4. gate: every member leads and accepts writes (a transaction id given out), or streams from the leader
         on its timeline; a member the formula has just converged notes grain patroni_debian_rollout:
         converged, so the next run's first step, answering the same, writes no grain and waits for no refresh;
      5. summary from the bootstrap member: members, roles, timeline, lag, port, VIP, verified;
      6. with pillar patroni:backup, the repository host (role backup) publishes its part in the Salt mine
         before the first phase, and once every member runs names them and creates each cluster's stanza.
    Every step has failhard: the first failure stops the rollout, its comment naming the minion and the cause. -#}
{%- set members = "I@patroni:role:bootstrap or I@patroni:role:replica"
                  ~ " or G@patroni_role:bootstrap or G@patroni_role:replica" %}
{%- set bootstrap = "I@patroni:role:bootstrap or G@patroni_role:bootstrap" %}
{#- the members whose formula would change something, as each said in the first step (grain patroni_debian_rollout,
    which the master reads at each phase's start): a converged member is left out of both phases, never out of
    the gate. "not converged" rather than "pending": a member that answers as its grain already stands (a new
    member has none) then need not write the grain and wait for the master to get it. #}
{#- In test mode the first step does not run (Salt runs no function then), so no member has answered: both phases
    then preview every member, as the formula's own test mode tells. #}
{%- set unsettled = members if opts.get("test") else "( " ~ members ~ " ) and not G@patroni_debian_rollout:converged" %}
{#- the first phase's: of those, the members that have work in it (patroni_debian.rollout_goes_early): the bootstrap
    member, and the members whose grain says early (one that leads now, or whose packages, certificates or pillar
    the first phase would see to beside the leader's bootstrap); with pillar etcd every member, whose
    etcd members start together there. A replica with its packages in place waits for the second phase. #}
{%- set early = unsettled if opts.get("test") else "( " ~ unsettled ~ " ) and ( " ~ bootstrap
                ~ " or G@patroni_debian_rollout:early or I@etcd:members:* )" %}
{#- the etcd of pillar etcd, on hosts of its own: no Patroni role (Salt's compound matcher needs the spaces inside
    the parentheses: "not (I@…" matched the bootstrap member too) #}
{%- set etcd_hosts = "I@etcd:members:* and not ( " ~ members ~ " )" %}
{#- the repository host of pillar patroni:backup (docs/backups.md) #}
{%- set repository = "I@patroni:role:backup" %}
{#- members, minions that ran a cluster and may have lost it from pillar since, etcd's own hosts, the repository
    host #}
{%- set everyone = members ~ " or G@patroni_debian_clusters:* or I@etcd:members:* or I@patroni:role:backup" %}
{#- The arguments go to the members as given, JSON-quoted; patroni_debian.rollout_arguments checks them there, in
    Python, before anything changes (the same check as orch.patroni_restart's and the gates'). -#}
{%- set clusters = pillar.get("cluster") %}
{%- set timeout = pillar.get("timeout", 120) %}
{%- set only = {"clusters": clusters} if clusters is not none else {} %}

{#- One Salt job on every minion concerned before anything else: this release of the modules and states (synced
    before the job renders anything), a fresh pillar, the arguments checked, the clusters pillar no longer
    declares left, and each member's answer to whether the formula would change anything there (salt/patroni/
    rollout.sls). One job rather than five: on two busy cores the three preparations at once took 3 s each,
    where this takes about as long as one of them (bench/README.md). #}
Every minion has this release and a fresh pillar, checks the arguments and leaves what pillar no longer declares:
  salt.function:
    - name: state.sls
    - tgt: "{{ everyone }}"
    - tgt_type: compound
    - arg: [patroni.rollout]
    - kwarg: {{ dict(sync_mods="modules,states",
                     pillar={"patroni_rollout": dict(clusters=clusters, timeout=timeout)}) | json }}
    - expect_minions: True
    - timeout: 15
    - failhard: True

{#- Declared before the first phase, in parallel, so that it runs beside it. Matching no minion is no failure:
    most sites run etcd on the Patroni members, or bring their own DCS. #}
etcd runs on its own hosts too:
  salt.state:
    - tgt: "{{ etcd_hosts }}"
    - tgt_type: compound
    - sls: etcd
    - expect_minions: False
    - timeout: 15
    - parallel: True
    - failhard: True
    - require:
      - salt: Every minion has this release and a fresh pillar, checks the arguments and leaves what pillar no longer declares

{#- The members' pgBackRest names the repository host's certificate, which its part in the Salt mine says: published
    before the members' formula runs, beside the last preparation. Matching no minion is no failure. #}
The repository host has published its part:
  salt.state:
    - tgt: "{{ repository }}"
    - tgt_type: compound
    - sls: patroni.backup_part
    - expect_minions: False
    - timeout: 15
    - parallel: True
    - failhard: True
    - require:
      - salt: Every minion has this release and a fresh pillar, checks the arguments and leaves what pillar no longer declares

First phase, the member that goes first in each cluster is converged:
  salt.state:
    - tgt: "{{ early }}"
    - tgt_type: compound
    - sls: patroni
    - pillar: {{ {"patroni_rollout": dict(only, phase="first")} | json }}
    - expect_minions: False
    - timeout: 15
    - failhard: True
    - require:
      - salt: Every minion has this release and a fresh pillar, checks the arguments and leaves what pillar no longer declares
      - salt: The repository host has published its part

Second phase, every member is converged:
  salt.state:
    - tgt: "{{ unsettled }}"
    - tgt_type: compound
    - sls: patroni
    - pillar: {{ {"patroni_rollout": dict(only, phase="all")} | json }}
    - expect_minions: False
    - timeout: 15
    - failhard: True
    - require:
      - salt: First phase, the member that goes first in each cluster is converged
      - salt: etcd runs on its own hosts too

Every member leads and accepts writes, or streams from the leader on its timeline:
  salt.function:
    - name: patroni_debian.wait_members
    - tgt: "{{ members }}"
    - tgt_type: compound
    - kwarg: {{ dict(clusters=clusters, timeout=timeout, note_converged=True) | json }}
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: Second phase, every member is converged

Summary of each cluster, verified:
  salt.function:
    - name: patroni_debian.summary
    - tgt: "{{ bootstrap }}"
    - tgt_type: compound
    - kwarg: {{ dict(clusters=clusters) | json }}
    - expect_minions: True
    - timeout: 15
    - failhard: True
    - require:
      - salt: Every member leads and accepts writes, or streams from the leader on its timeline

{#- Once every member runs: the repository host names them (their parts in the Salt mine, published by their
    formula) and creates each cluster's stanza, which needs its leader. Matching no minion is no failure. #}
The repository host serves every member and has each cluster's stanza:
  salt.state:
    - tgt: "{{ repository }}"
    - tgt_type: compound
    - sls: patroni.repository
    - expect_minions: False
    - timeout: 15
    - failhard: True
    - require:
      - salt: Every member leads and accepts writes, or streams from the leader on its timeline
