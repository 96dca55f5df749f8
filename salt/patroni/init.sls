# Every Patroni cluster this minion has in pillar patroni:clusters, from a bare Debian host to a healthy member.
include:
  - patroni.validate
  - patroni.package
  - patroni.program
  - patroni.tls
  - patroni.config
  - patroni.service
  - patroni.vip
  - patroni.dynamic
  - patroni.backup
