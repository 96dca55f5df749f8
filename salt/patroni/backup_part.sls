{#- The repository host's part in pgBackRest, published in the Salt mine before the members' formula runs (they
    name its certificate): orch.patroni applies this alone first, salt/patroni/repository.sls includes it. -#}
This host's part in pgBackRest is published:
  patroni_debian.backup_published
