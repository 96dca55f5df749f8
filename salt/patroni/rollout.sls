{#- The first step of the rollout (salt/orch/patroni.sls) on every minion it concerns, in one Salt job that the
    orchestration runs with this release of the modules and states (state.sls sync_mods=modules,states) and a
    fresh pillar: the arguments checked, the clusters pillar no longer declares here left, that pillar noted for the
    gate, and on a member whether the formula would change anything, which the rollout's phases go by (grain
    patroni_debian_rollout). Not part of the highstate. -#}
{%- set rollout = pillar.get("patroni_rollout", {}) %}
{%- set rollout = rollout if rollout is mapping else {} %}

This minion is ready for the rollout:
  patroni_debian.rollout_prepared:
    - clusters: {{ rollout.get("clusters") | json }}
    - timeout: {{ rollout.get("timeout", 120) | json }}
