"""
States for Patroni clusters of the Debian layout: what pillar declares about ``<version>-<cluster>`` becomes
true on this member.

Each state checks first, predicts its changes (secrets already masked by the execution module), returns them
with ``result: None`` in test mode only when something would change, acts through ``__salt__``, then checks
again. Passwords never travel as state arguments: the execution module reads them from pillar.
"""

import salt.defaults.events
import salt.utils.event
from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "patroni_debian"

HEALTH_TIMEOUT = 120


def __virtual__():
    if "patroni_debian.render_config" not in __salt__:
        return (False, "the patroni_debian execution module is not loaded")
    return __virtualname__


def _ret(name, comment=""):
    return {"name": name, "result": True, "changes": {}, "comment": comment}


def _failed(ret, exc):
    ret.update(result=False, changes={}, comment=f"{ret['name']}: {exc}")
    return ret


def pillar_valid(name):
    """
    This minion's pillar ``patroni`` is valid, checked before anything is installed or changed (the formula's
    other states require this one). Never changes anything, so test mode reports the same.

    .. code-block:: yaml

        Pillar patroni is valid:
          patroni_debian.pillar_valid: []
    """
    ret = _ret(name)
    try:
        clusters = __salt__["patroni_debian.check_pillar"]()
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _failed(ret, exc)
    ret["comment"] = f"{name}: {', '.join(sorted(clusters))} declared as accepted"
    return ret


def dcs_reachable(name, version, cluster, wait=0):
    """
    The cluster's DCS answers (one endpoint of the DCS section its config is made from accepts a connection
    within 2 s), checked before anything changes: a DCS outage fails the run at once, naming the DCS, and the
    formula's other states, which require ``patroni.validate``, change nothing. Never changes anything.

    The etcd of pillar ``etcd`` may not answer yet because this very rollout starts it: on a minion that runs
    one of its members, the etcd formula has waited for the cluster whole before; on one that runs none, its
    members start on their own hosts beside this run, and this state asks for up to ``wait`` seconds. In a
    dry run, such an etcd that does not answer yet leaves the check undecided (``None``), not failed.

    .. code-block:: yaml

        The DCS of 15-main answers:
          patroni_debian.dcs_reachable:
            - version: 15
            - cluster: main
            - wait: 120
    """
    ret = _ret(name)
    forming = None
    try:
        try:
            answered = __salt__["patroni_debian.dcs_reachable"](version, cluster)
        except CommandExecutionError:
            # only a DCS that does not answer at once costs the question whether this run starts it
            forming = _etcd_forming()
            if forming != "elsewhere" or __opts__["test"]:
                raise
            answered = __salt__["patroni_debian.dcs_reachable"](version, cluster, wait=wait)
    except CommandExecutionError as exc:
        if __opts__["test"] and forming:
            ret.update(result=None, comment=f"{name}: checked once this run has started etcd ({exc})")
            return ret
        return _failed(ret, exc)
    except SaltInvocationError as exc:
        return _failed(ret, exc)
    where = f" at {answered['endpoint']}" if answered["endpoint"] else " (not checked: it finds its peers itself)"
    waited = f", after {answered['waited']:g} s" if answered.get("waited", 0) >= 1 else ""
    ret["comment"] = f"{name}: {answered['dcs']}{where}{waited}"
    return ret


def _etcd_forming():
    """Whether this run may start the etcd of pillar ``etcd`` it asks for: ``"here"`` when it starts or restarts
    this minion's member (a dry run would), ``"elsewhere"`` when pillar declares a cluster this minion runs no
    member of (the rollout starts them on their own hosts), else None."""
    plan = __salt__["patroni_debian.etcd_member_plan"]()
    if plan.get("error"):
        return None
    if not plan.get("member"):
        return "elsewhere" if plan.get("cluster") else None
    starts = __opts__["test"] and (bool(plan["changes"]) or not __salt__["service.status"]("etcd"))
    return "here" if starts else None


def packages_installed(name, pkgs):
    """
    The packages ``pkgs`` are installed, for test mode: what is missing, read from dpkg alone (``pkg.version``),
    predicted as installs. Salt's ``pkg.installed`` runs ``apt-get update`` even in test mode (it asks apt for
    the versions it would install, and apt's ``latest_version`` refreshes first), and a dry run must change
    nothing; the formula uses ``pkg.installed`` itself when it acts. Outside test mode it is ``pkg.installed``.

    .. code-block:: yaml

        PostgreSQL, Patroni and the DCS client are installed:
          patroni_debian.packages_installed:
            - pkgs: [patroni, postgresql-15]
    """
    if not __opts__["test"]:
        return __states__["pkg.installed"](name, pkgs=pkgs)
    ret = _ret(name)
    missing = [package for package in pkgs if not __salt__["pkg.version"](package)]
    if not missing:
        ret["comment"] = f"{name}: {', '.join(pkgs)} installed"
        return ret
    ret.update(
        result=None,
        changes={package: {"old": "", "new": "installed"} for package in missing},
        comment=f"{name}: would install {', '.join(missing)}",
    )
    return ret


def etcd_pillar_valid(name):
    """
    This minion's pillar ``etcd`` is valid and its etcd member can be what pillar says, checked before anything is
    installed or changed: an invalid pillar, a renamed cluster, a member this minion runs that pillar no longer
    declares, or a running cluster that does not list it fail here with the reason (the etcd formula's other
    states require this one). A minion pillar declares no member on passes. Never changes anything.

    .. code-block:: yaml

        Pillar etcd is valid:
          patroni_debian.etcd_pillar_valid: []
    """
    ret = _ret(name)
    try:
        plan = __salt__["patroni_debian.etcd_member_plan"]()
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _failed(ret, exc)
    if plan.get("error"):
        return _failed(ret, plan["error"])
    if not plan["member"]:
        ret["comment"] = f"{name}: pillar etcd declares no etcd member on this minion"
    else:
        start = "runs" if plan["has_data"] else f"starts as a {plan['start_as']} member"
        ret["comment"] = f"{name}: member of etcd cluster {plan['cluster']}; {start}"
    return ret


def _etcd_changes(plan, active, enabled):
    changes = {}
    if plan["changes"]:
        changes["/etc/default/etcd"] = {"keys": plan["changes"]}
    if plan["changes"] or not active:
        what = "restarted" if active else "started"
        changes["etcd"] = what if plan["has_data"] else f"{what} as a {plan['start_as']} member"
    elif plan.get("renewed"):
        changes["etcd"] = f"restarted to take its renewed {', '.join(plan['renewed'])}"
    if not enabled:
        changes["enabled"] = True
    return changes


def etcd_member_running(name, timeout=HEALTH_TIMEOUT):
    """
    This minion's etcd member runs as pillar ``etcd`` declares it: ``/etc/default/etcd`` written whole (never
    the package's one-member localhost cluster), ``etcd.service`` enabled and started without waiting for it
    (Debian's unit is ``Type=notify``: a member of a new cluster is ready only once a quorum runs, so members
    started one after another would time out), then the cluster whole: every declared member healthy, one
    cluster ID, its member list the declared one. A minion pillar declares no member on has nothing to run.

    .. code-block:: yaml

        etcd member pg1 runs:
          patroni_debian.etcd_member_running:
            - timeout: 120
    """
    ret = _ret(name)
    try:
        plan = __salt__["patroni_debian.etcd_member_plan"]()
        if plan.get("error"):
            return _failed(ret, plan["error"])
        if not plan["member"]:
            ret["comment"] = f"{name}: pillar etcd declares no etcd member on this minion; nothing to run"
            return ret
        active = __salt__["service.status"]("etcd")
        changes = _etcd_changes(plan, active, __salt__["service.enabled"]("etcd"))
        if changes and __opts__["test"]:
            ret.update(result=None, changes=changes, comment=f"{name}: would be configured and (re)started")
            return ret
        if changes:
            __salt__["patroni_debian.etcd_configure"]()
            if "enabled" in changes:
                __salt__["service.enable"]("etcd")
            if "etcd" in changes:
                __salt__["service.restart" if active else "service.start"]("etcd", no_block=True)
        if __opts__["test"]:
            ret["comment"] = f"{name}: runs as declared"
            return ret
        view = __salt__["patroni_debian.etcd_wait"](timeout=timeout)
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _failed(ret, exc)
    ret["changes"] = changes
    ret["comment"] = (
        f"{name}: etcd cluster {view['cluster']} (id {view['cluster_id']}) whole: "
        f"{', '.join(view['members'])} healthy, {view['leader']} leads"
    )
    return ret


def program_installed(name):
    """
    This module file is installed where the configs name it (``/usr/share/patroni-debian/patroni_debian.py``),
    for Patroni to run as its bootstrap and clone program: the very file Salt loaded, root's, 0755.

    .. code-block:: yaml

        The program Patroni runs is installed:
          patroni_debian.program_installed: []
    """
    ret = _ret(name)
    try:
        if __salt__["patroni_debian.program_installed"]():
            ret["comment"] = f"{name}: the program is current"
            return ret
        ret["changes"] = {"program": {"old": "missing or another release", "new": "this release"}}
        if __opts__["test"]:
            ret.update(result=None, comment=f"{name}: the program would be installed")
            return ret
        done = __salt__["patroni_debian.install_program"]()
        ret["comment"] = f"{name}: installed at {done['path']}"
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _failed(ret, exc)
    return ret


def ca_certificate_present(name, ca_server, signing_policy="patroni_debian", **file_args):
    """
    The certificate of the cluster's CA, as the CA server ``ca_server`` has it, is in file ``name``: fetched through
    Salt's x509 module (the signing policy's ``signing_cert``, a peer call to the CA server) and written as
    ``x509.pem_managed`` writes it (``file_args``: mode, makedirs, …). A CA server that does not answer, or has no
    CA yet, fails this state with its reason (the formula retries: the CA may be being made in the same run); in
    test mode that is a predicted change, with what the CA server said.

    .. code-block:: yaml

        The cluster CA's certificate is here:
          patroni_debian.ca_certificate_present:
            - name: /etc/patroni/tls/ca.crt
            - ca_server: pg1
    """
    ret = _ret(name)
    try:
        policy = __salt__["x509.get_signing_policy"](signing_policy, ca_server=ca_server)
    except (CommandExecutionError, SaltInvocationError) as exc:
        if __opts__["test"]:
            # a dry run before the CA server has run the formula: its CA is made by the same run, not yet there
            ret.update(
                result=None,
                changes={name: f"the CA certificate of {ca_server}"},
                comment=f"{name}: would be fetched from {ca_server} once it has made its CA (now it says: {exc})",
            )
            return ret
        return _failed(ret, f"the CA server {ca_server} gave no CA certificate: {exc}")
    if not (policy or {}).get("signing_cert"):
        return _failed(ret, f"the CA server {ca_server} has no signing_cert in its signing policy {signing_policy}")
    return __states__["x509.pem_managed"](name, text=policy["signing_cert"], **file_args)


def configured(name, version, cluster, replace=False):
    """
    ``/etc/patroni/<version>-<cluster>.yml`` (and the ``.vip`` file when pillar sets ``vip``) hold what pillar
    ``patroni:clusters:<version>-<cluster>`` declares, as ``createconfig`` renders it.

    A file this module wrote (its header says so) is brought back to the declared content, so hand edits
    heal; any other file at that path is replaced only with ``replace: True``.

    .. code-block:: yaml

        Patroni 15-main is configured:
          patroni_debian.configured:
            - version: 15
            - cluster: main
    """
    ret = _ret(name)
    package = f"postgresql-{version}"
    if __opts__["test"] and not __salt__["pkg.version"](package):
        # a bare host in a dry run: the config cannot be rendered before its PostgreSQL exists
        ret["changes"] = {f"/etc/patroni/{version}-{cluster}.yml": {"created": True}}
        ret.update(result=None, comment=f"{name}: would be written once {package} is installed")
        return ret
    try:
        # One render: in a dry run the plan, else createconfig, which plans under the host lock, writes only
        # what the plan changes and reads each file back; the formula's rules (declared) hold for both.
        function = "render_config" if __opts__["test"] else "createconfig"
        plan = __salt__[f"patroni_debian.{function}"](version, cluster, force=replace, declared=True)
        if plan["warnings"]:
            ret["warnings"] = plan["warnings"]
        if not plan["changes"]:
            ret["comment"] = f"{name}: the config files are as declared" + _warned(plan["warnings"])
            return ret
        ret["changes"] = plan["changes"]
        files = ", ".join(plan["changes"])
        if __opts__["test"]:
            ret.update(result=None, comment=f"{name}: {files} would be written")
            return ret
        ret["comment"] = f"{name}: {files} written" + _warned(plan["warnings"])
        if plan["still_differ"]:
            ret.update(result=False, comment=f"{name}: written, yet {', '.join(plan['still_differ'])} still differ")
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _failed(ret, exc)
    return ret


def _warned(warnings):
    """The render's warnings (a trust rule, an open REST API, commands from pillar, …) for the comment, where a
    person reads them, besides Salt's warnings list."""
    return "".join(f"\nwarning: {warning}" for warning in warnings)


def _pg_common_unit(unit):
    """What pg-common's ``postgresql@<version>-<cluster>`` may do: ``masked`` (nothing starts it), ``enabled``
    or ``disabled``."""
    if __salt__["service.masked"](unit):
        return "masked"
    return "enabled" if __salt__["service.enabled"](unit) else "disabled"


def _unit_state(unit):
    return {
        "enabled": __salt__["service.enabled"](unit),
        "running": __salt__["service.status"](unit),
    }


def no_foreign_cluster(name, version, cluster, replace_existing=False):
    """
    No pg-common cluster ``<version>/<cluster>`` stands outside Patroni where Patroni must create or clone it
    (Debian's automatic ``main``, running under ``postgresql@``, maybe with data). Refused, touching nothing,
    unless ``replace_existing`` (pillar ``patroni:clusters:<version>-<cluster>:replace_existing``) says to
    drop it with its data.

    .. code-block:: yaml

        Patroni 15-main has no foreign cluster in its way:
          patroni_debian.no_foreign_cluster:
            - version: 15
            - cluster: main
            - replace_existing: false
    """
    ret = _ret(name)
    try:
        foreign = __salt__["patroni_debian.foreign_cluster"](version, cluster)
        if foreign is None:
            ret["comment"] = f"{name}: no cluster outside Patroni"
            return ret
        where = f"{foreign['cluster']} ({foreign['status']}, start {foreign['start']}, data in {foreign['datadir']})"
        if replace_existing is not True:
            raise CommandExecutionError(
                f"{where} exists outside Patroni; nothing was touched. If its data is not needed, set pillar "
                f"patroni:clusters:{version}-{cluster}:replace_existing: true to drop it and let Patroni create or "
                "clone it"
            )
        ret["changes"] = {foreign["cluster"]: {"old": where, "new": "dropped (pillar replace_existing)"}}
        if __opts__["test"]:
            ret.update(result=None, comment=f"{name}: {foreign['cluster']} would be dropped with its data")
            return ret
        __salt__["patroni_debian.drop_foreign_cluster"](version, cluster)
        ret["comment"] = f"{name}: {foreign['cluster']} dropped, as pillar asked"
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _failed(ret, exc)
    return ret


READY = ("healthy", "claimed", "started")  # what running waits for after starting Patroni


def running(name, version, cluster, timeout=HEALTH_TIMEOUT, ready="healthy"):
    """
    ``patroni@<version>-<cluster>`` is enabled and running, ``postgresql@<version>-<cluster>`` stays out of
    its way, and the member is healthy within ``timeout`` seconds: the leader, or a replica streaming from the
    leader on its timeline.

    pg-common's unit is masked, not only disabled: root's ``pg_ctlcluster <version> <cluster> start`` goes
    through ``systemctl start postgresql@…``, which would start the cluster's PostgreSQL behind Patroni's back
    (a second primary when Patroni is stopped on a replica). ``pg_ctlcluster … reload`` and ``pg_lsclusters``
    work as before; :py:func:`absent` unmasks it when the cluster goes back to pg-common.

    A member with the replica role and no data yet starts only once the DCS shows a leader running as the
    primary, so it clones and never races the bootstrap member to create the cluster. A member with data
    starts at once: were it the most advanced, Patroni must be able to elect it.

    ``ready: claimed`` (the orchestration's first phase) returns as soon as Patroni runs and the cluster is
    claimed (led, or its bootstrap under way); ``ready: started`` (its second phase) once Patroni runs, so
    that a member's clusters clone side by side rather than one after the other. The orchestration's gate
    then waits for their health.

    Never restarts a running Patroni: a restart of the leader's would cost a failover.

    .. code-block:: yaml

        Patroni 15-main is running and healthy:
          patroni_debian.running:
            - version: 15
            - cluster: main
            - timeout: 120
    """
    ret = _ret(name)
    scope = f"{version}-{cluster}"
    unit, plain = f"patroni@{scope}", f"postgresql@{scope}"
    if ready not in READY:
        return _failed(ret, SaltInvocationError(f"ready: {ready!r} is not one of {', '.join(READY)}"))
    try:
        before, plain_state = _unit_state(unit), _pg_common_unit(plain)
        changes = {}
        if plain_state != "masked":
            changes[plain] = {"old": plain_state, "new": "masked"}
        if not before["enabled"]:
            changes[f"{unit} enabled"] = {"old": False, "new": True}
        if not before["running"]:
            changes[f"{unit} running"] = {"old": False, "new": True}
        if __opts__["test"]:
            if changes:
                ret.update(result=None, changes=changes, comment=f"{name}: would start it and wait up to {timeout} s")
            else:
                ret["comment"] = f"{name}: {unit} is enabled and running"
            return ret
        if plain_state == "enabled":
            __salt__["service.disable"](plain)
        if plain_state != "masked":
            __salt__["service.mask"](plain)
        if _pg_common_unit(plain) != "masked":  # re-checked here: the orchestration's phases return early below
            raise CommandExecutionError(f"{plain} is not masked after systemctl mask")
        if not before["enabled"]:
            __salt__["service.enable"](unit)
        if before["running"] and not __salt__["patroni_debian.serves_its_config"](version, cluster):
            # TLS turned on or off in the file: its health is asked as the file says, so Patroni reads it first
            # (mod_watch would, but only after the health wait)
            __salt__["service.reload"](unit)
            changes[f"{unit} reloaded"] = "its REST API changed scheme"
        if not before["running"]:
            if __salt__["patroni_debian.clones_when_started"](version, cluster):
                __salt__["patroni_debian.wait_leader_in_dcs"](version, cluster, timeout=timeout)
            __salt__["service.start"](unit)
        if ready == "started":
            ret["changes"] = changes
            ret["comment"] = f"{name}: {unit} runs; its health is for the orchestration's gate to wait for"
            return ret
        if ready == "claimed":
            claim = __salt__["patroni_debian.wait_claimed"](version, cluster, timeout=timeout)
            ret["changes"] = changes
            who = f"{claim['leader']} leads" if claim["leader"] else "its bootstrap is under way"
            ret["comment"] = f"{name}: {unit} runs and {version}-{cluster} is claimed: {who}"
            return ret
        health = __salt__["patroni_debian.wait_healthy"](version, cluster, timeout=timeout)
        after = _unit_state(unit)
        if not (after["enabled"] and after["running"]):
            raise CommandExecutionError(
                f"{unit} is {'enabled' if after['enabled'] else 'disabled'} "
                f"and {'running' if after['running'] else 'stopped'} after starting it"
            )
        ret["changes"] = changes
        ret["comment"] = f"{name}: {health['member']} is {health['role']} on timeline {health['timeline']}" + (
            "" if health["role"] == "primary" else f", streaming from {health['leader']}"
        )
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _failed(ret, exc)
    return ret


def mod_watch(name, version, cluster, sfun=None, **kwargs):
    """
    Reload ``patroni@<version>-<cluster>`` after its config file changed (``watch`` on :py:func:`configured`):
    Patroni re-reads its file on SIGHUP. Never a restart, which would cost the leader a failover.

    .. code-block:: yaml

        Patroni 15-main is running and healthy:
          patroni_debian.running:
            - version: 15
            - cluster: main
            - watch:
              - patroni_debian: Patroni 15-main is configured
    """
    ret = _ret(name)
    unit = f"patroni@{version}-{cluster}"
    if sfun != "running" or not __salt__["service.status"](unit):
        ret["comment"] = f"{name}: nothing to reload"
        return ret
    if __opts__["test"]:
        ret.update(result=None, comment=f"{name}: {unit} would be reloaded")
        return ret
    __salt__["service.reload"](unit)
    ret.update(changes={unit: "reloaded"}, comment=f"{name}: {unit} reloaded to read its new config")
    return ret


def vip_running(name, version, cluster):
    """
    ``vip-manager@<version>-<cluster>`` is enabled and running when pillar sets a ``vip`` for the cluster
    (its file is written by :py:func:`configured`); without a VIP, nothing to do.

    .. code-block:: yaml

        The VIP of 15-main follows its leader:
          patroni_debian.vip_running:
            - version: 15
            - cluster: main
    """
    ret = _ret(name)
    unit = f"vip-manager@{version}-{cluster}"
    try:
        # what pillar declares, as the formula read it for this job: no second render of the config
        declared = __salt__["patroni_debian.formula_clusters"]()
        if not declared["valid"]:
            raise SaltInvocationError("pillar patroni does not validate; patroni_debian.check_pillar says why")
        if not any(c["scope"] == f"{version}-{cluster}" and c["vip"] for c in declared["clusters"]):
            ret["comment"] = f"{name}: no VIP declared"
            return ret
        before = _unit_state(unit)
        changes = {f"{unit} {what}": {"old": False, "new": True} for what, on in before.items() if not on}
        if not changes:
            ret["comment"] = f"{name}: {unit} is enabled and running"
            return ret
        ret["changes"] = changes
        if __opts__["test"]:
            ret.update(result=None, comment=f"{name}: would enable and start {unit}")
            return ret
        if not before["enabled"]:
            __salt__["service.enable"](unit)
        if not before["running"]:
            __salt__["service.start"](unit)
        if not all(_unit_state(unit).values()):
            raise CommandExecutionError(f"{unit} did not start; see journalctl -u {unit}")
        ret["comment"] = f"{name}: {unit} started"
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _failed(ret, exc)
    return ret


def dynamic_configured(name, version, cluster):
    """
    The cluster's live DCS settings (ttl, loop_wait, ``postgresql.parameters``, ``pg_hba``, …) match
    ``bootstrap.dcs`` of the member's config, through ``PATCH /config`` of the differing keys. Patroni applies
    them on every member at its next loop. When a parameter needs a restart, the comment says so and nothing
    is restarted.

    .. code-block:: yaml

        The live settings of 15-main are as declared:
          patroni_debian.dynamic_configured:
            - version: 15
            - cluster: main
    """
    ret = _ret(name)
    unit = f"patroni@{version}-{cluster}"
    if __opts__["test"] and not __salt__["service.status"](unit):
        # the member's REST API is the way to the DCS, and it would only be started by the state before this
        ret.update(result=None, comment=f"{name}: cannot compare yet: {unit} is not running (it would be started)")
        return ret
    try:
        changes = __salt__["patroni_debian.dynamic_config_changes"](version, cluster)
        if not changes:
            ret["comment"] = f"{name}: the live DCS settings are as declared"
            return ret
        ret["changes"] = changes
        if __opts__["test"]:
            ret.update(result=None, comment=f"{name}: {', '.join(changes)} would be changed in the DCS")
            return ret
        done = __salt__["patroni_debian.patch_dynamic_config"](version, cluster)
        left = __salt__["patroni_debian.dynamic_config_changes"](version, cluster, fresh=True)
        ret["changes"] = done["changes"]
        ret["comment"] = (
            f"{name}: {', '.join(done['changes'])} changed in the DCS"
            if done["changes"]
            else f"{name}: another member has just made the same changes"
        )
        if done["pending_restart"]:
            ret["comment"] += "; PostgreSQL needs a restart to apply them (pending_restart), not done here"
        if left:
            ret.update(result=False, comment=f"{name}: patched, yet {', '.join(left)} still differ")
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _failed(ret, exc)
    return ret


def absent(name, version, cluster, purge=False):
    """
    The member is gone from this host: ``patroni@`` and ``vip-manager@`` stopped and disabled, the config and VIP
    files removed, ``postgresql@`` unmasked. The pg-common cluster and its data are kept, pg-common's again,
    unless ``purge: True`` (then ``pg_dropcluster``).

    .. code-block:: yaml

        Patroni 15-old is absent:
          patroni_debian.absent:
            - version: 15
            - cluster: old
    """
    ret = _ret(name)
    try:  # purge is read by the module's one boolean rule ('maybe' refused, naming it)
        planned = __salt__["patroni_debian.removal_plan"](version, cluster, purge=purge)
        if not planned:
            ret["comment"] = f"{name}: nothing of {version}-{cluster} is left"
            return ret
        ret["changes"] = planned
        if __opts__["test"]:
            ret.update(result=None, comment=f"{name}: would remove {', '.join(planned)}")
            return ret
        __salt__["patroni_debian.remove"](version, cluster, purge=purge)
        left = __salt__["patroni_debian.removal_plan"](version, cluster, purge=purge)
        ret["comment"] = f"{name}: removed {', '.join(planned)}"
        if left:
            ret.update(result=False, comment=f"{name}: {', '.join(left)} still there")
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _failed(ret, exc)
    return ret


ROLLOUT_GRAIN = "patroni_debian_rollout"  # the execution module's ROLLOUT_GRAIN


def rollout_prepared(name, clusters=None, timeout=HEALTH_TIMEOUT):
    """
    The first step of the rollout (``orch.patroni``) on every minion it concerns, in one Salt job run with this
    release of the modules and a fresh pillar: its arguments checked (``patroni_debian.rollout_arguments``), the
    clusters pillar no longer declares here left (``patroni_debian.leave_undeclared``), this pillar noted for the
    rollout's gate and summary (``patroni_debian.note_rollout_pillar``), and on a member the answer to whether the
    formula would change anything (``patroni_debian.rollout_converged``) and, if so, whether its first phase has
    work here. The rollout's phases leave out the members whose grain ``patroni_debian_rollout`` says
    ``converged``, its first phase also those that say neither ``early`` nor have the bootstrap role; the master
    knows the grain this job sent with its pillar request, so the grain is written (and the refresh it asks for
    waited for, which hands it to the master) only when the answer falls in another of these classes.

    Changes: the clusters left. In test mode nothing is left and no grain is set.

    .. code-block:: yaml

        This minion is ready for the rollout:
          patroni_debian.rollout_prepared:
            - clusters: ["15-main"]
            - timeout: 120
    """
    ret = _ret(name)
    try:
        arguments = __salt__["patroni_debian.rollout_arguments"](clusters, timeout)
        if __opts__["test"]:
            leaving = __salt__["patroni_debian.undeclared_here"](arguments["clusters"])
            if leaving:
                ret.update(result=None, changes={"left": leaving}, comment=f"{name}: would leave {', '.join(leaving)}")
            else:
                ret["comment"] = f"{name}: the arguments are valid and pillar declares every cluster run here"
            return ret
        left = __salt__["patroni_debian.leave_undeclared"](arguments["clusters"], arguments["timeout"])
        if left:
            ret["changes"] = {"left": left}
        __salt__["patroni_debian.note_rollout_pillar"]()
        answer = __salt__["patroni_debian.rollout_converged"](arguments["clusters"])
        value = _rollout_answer(answer) if answer["member"] else None
        if value and _grain_to_write(value, answer["role"], __grains__.get(ROLLOUT_GRAIN)):
            if not _grain_handed_to_master(value):
                return _failed(ret, "the minion did not confirm its pillar refresh within 30 s")
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _failed(ret, exc)
    said = [f"left {', '.join(left)}"] if left else []
    said += [f"{value}: {answer['reason']}"] if answer["member"] else []
    ret["comment"] = f"{name}: " + ("; ".join(said) or "no Patroni role here, nothing to leave")
    return ret


def _rollout_answer(answer):
    """This member's word for the rollout's phases (grain ``patroni_debian_rollout``): ``converged`` keeps it out
    of both, ``early`` puts it in the first as well as the second, any other word (``pending``, or no grain) in the
    second only. A member of bootstrap role is in the first phase by its role: it need not say ``early``."""
    if answer["converged"]:
        return "converged"
    return "early" if answer["early"] and answer["role"] != "bootstrap" else "pending"


def _grain_to_write(value, role, grain):
    """Whether the answer ``value`` must be written over grain ``patroni_debian_rollout`` as the master knows it
    (``grain``) on a member of ``role``: only when the phases would read the two differently, since a write costs
    the pillar refresh that hands it to the master."""
    return _grain_class(value, role) != _grain_class(grain, role)


def _grain_class(value, role):
    """What the phases make of grain ``patroni_debian_rollout`` being ``value`` on a member of ``role``."""
    if value == "converged" or (value == "early" and role != "bootstrap"):
        return value
    return "pending"


def _grain_handed_to_master(value):
    """Grain ``patroni_debian_rollout`` set to ``value``, and the pillar refresh grains.setval asks for (which
    re-reads grains and sends them to the master) waited for, as ``saltutil.refresh_pillar wait=True`` waits,
    but saying whether it completed."""
    with salt.utils.event.get_event("minion", opts=__opts__, listen=True) as events:
        __salt__["grains.setval"](ROLLOUT_GRAIN, value, refresh_pillar=True)
        done = events.get_event(tag=salt.defaults.events.MINION_PILLAR_REFRESH_COMPLETE, wait=30)
    return bool(done) and done.get("complete") is not False


def backup_published(name):
    """
    This host's part in pgBackRest (``patroni_debian.backup_identity``: its certificate's CN, whether it is the
    repository host, the stanzas it runs) is in the Salt mine, published when it changed: the repository host
    and the members read each other's there.

    .. code-block:: yaml

        This host's part in pgBackRest is published:
          patroni_debian.backup_published
    """
    ret = _ret(name)
    try:
        mine = __salt__["patroni_debian.backup_identity"]()
        if _published_part() == mine:
            ret["comment"] = f"{name}: published"
            return ret
        ret["changes"] = {"published": mine}
        if __opts__["test"]:
            ret.update(result=None, comment=f"{name}: would publish it")
            return ret
        __salt__["mine.send"](BACKUP_MINE_KEY, mine_function="patroni_debian.backup_identity")
        if _published_part() != mine:
            return _failed(ret, "the Salt mine did not take it (is mine.send allowed for this minion?)")
        ret["comment"] = f"{name}: published"
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _failed(ret, exc)
    return ret


BACKUP_MINE_KEY = "patroni_debian_backup"  # the execution module's MINE_KEY


def _published_part():
    """What the Salt mine holds of this minion's part in pgBackRest, or None."""
    return (__salt__["mine.get"](__opts__["id"], BACKUP_MINE_KEY) or {}).get(__opts__["id"])


def backup_configured(name):
    """
    ``/etc/pgbackrest.conf`` says what pillar ``patroni:backup`` and the published parts make of this host: a
    member's repository and TLS server, or the repository host's repository, TLS server and members.

    .. code-block:: yaml

        pgBackRest is configured:
          patroni_debian.backup_configured
    """
    ret = _ret(name)
    try:
        plan = __salt__["patroni_debian.backup_plan"]()
        if plan["error"]:
            return _failed(ret, plan["error"])
        if not plan["changed"]:
            ret["comment"] = f"{name}: as declared" if plan["role"] else f"{name}: no backup here"
            return ret
        ret["changes"] = {"/etc/pgbackrest.conf": f"written for the {plan['role']}"}
        if __opts__["test"]:
            ret.update(result=None, comment=f"{name}: would write /etc/pgbackrest.conf")
            return ret
        __salt__["patroni_debian.backup_configure"]()
        if __salt__["patroni_debian.backup_plan"]()["changed"]:
            return _failed(ret, "/etc/pgbackrest.conf still differs after it was written")
        ret["comment"] = f"{name}: /etc/pgbackrest.conf written"
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _failed(ret, exc)
    return ret


def backup_stanza(name, version, cluster):
    """
    The stanza of ``<version>/<cluster>`` exists in the repository (run on the repository host, once the
    cluster has a leader): created when pgBackRest does not know it.

    .. code-block:: yaml

        The stanza 15-main exists:
          patroni_debian.backup_stanza:
            - version: 15
            - cluster: main
    """
    ret = _ret(name)
    try:
        stanza = f"{version}-{cluster}"  # until a restore gives the cluster a fresh one (backup:stanzas)
        try:
            listed = __salt__["patroni_debian.backups"](version, cluster)
            exists, stanza = listed["status"] != "missing stanza path", listed["stanza"]
        except CommandExecutionError:
            exists = False
        if exists:
            ret["comment"] = f"{name}: it exists"
            return ret
        ret["changes"] = {"stanza": stanza}
        if __opts__["test"]:
            ret.update(result=None, comment=f"{name}: would create it")
            return ret
        __salt__["patroni_debian.backup_stanza"](version, cluster)
        ret["comment"] = f"{name}: created"
    except (CommandExecutionError, SaltInvocationError) as exc:
        return _failed(ret, exc)
    return ret
