include:
  - patroni.package

# The module file Salt loaded, where every config names it for Patroni's bootstrap and clone methods.
# Nothing restarts on a change: Patroni runs it afresh for each bootstrap or clone.
The program Patroni runs is installed:
  patroni_debian.program_installed:
    - require:
      - sls: patroni.package
