"""What the host process owes the operating system around its life: its logs' destinations and
level, the pid file, the service manager's notifications and watchdog, and the sockets the
service manager passed (socket activation).

The ``Host`` (``corral.app``) calls one hook per step of its life; each does what the settings
and the environment ask and nothing otherwise (no pid file unless ``pid_file``, no notification
without ``NOTIFY_SOCKET``):

    begin(settings)        before listening: logs set up, pid file checked, systemd's variables read
    passed_sockets(wanted) the passed sockets matched to the addresses to listen on
    serving(addresses)     every binding listens, apps started: pid file written, READY=1, watchdog
    reloading(reason)      RELOADING=1         reloaded(ok, text)  READY=1 and a STATUS= line
    settings_changed(...)  a reload's new log settings
    reopen_logs()          SIGUSR1: the access log's file opened again (logrotate)
    stopping()             STOPPING=1          stopped()  pid file removed, watchdog ended
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence

from corral import logs
from corral.config.model import FrontSettings
from corral.errors import CorralError
from corral.ops import pidfile, systemd

logger = logging.getLogger("corral")

#: The settings ``configure_logs`` acts on (a reload that changes one sets the logs up again).
LOG_SETTINGS = ("access_log", "access_log_format", "log_level")


class DutyError(CorralError):
    """The host cannot do what its settings ask (open its access log, claim its pid file)."""


def configure_logs(settings: FrontSettings) -> None:
    """The server log's level and the access log's destination, as ``settings`` say.
    ``DutyError`` when the access log's file cannot be opened."""
    try:
        logs.setup(level=settings.log_level, access_log=settings.access_log)
    except OSError as exc:
        raise DutyError(
            f"cannot open the access log {settings.access_log}: {exc.strerror or exc}"
        ) from None


class HostDuties:
    """See the module doc. One per host process."""

    def __init__(self) -> None:
        self.pid_file: str | None = None
        self._pid_written = False
        self.notifier: systemd.Notifier | None = None
        self._environment = systemd.Environment()
        self._watchdog: asyncio.TimerHandle | None = None

    # -- starting ------------------------------------------------------------------------------

    def begin(self, settings: FrontSettings) -> None:
        """Before anything listens. ``DutyError`` (nothing to undo)."""
        configure_logs(settings)
        self.pid_file = settings.pid_file
        if self.pid_file is not None:
            try:
                pidfile.check(self.pid_file)
            except pidfile.PidFileBusy as exc:
                raise DutyError(str(exc)) from None
        self._environment = environment = systemd.take_environment()
        if environment.notify_address is not None:
            self.notifier = systemd.Notifier(environment.notify_address)
            self.notifier.status("starting")

    def passed_sockets(self, wanted: Sequence[tuple[str, int]]) -> dict[int, socket.socket]:
        """The sockets the service manager passed (``LISTEN_FDS``), by index in ``wanted``;
        those no address wants are closed, with a warning."""
        passed = systemd.adopt(self._environment.listen_fds)
        if not passed:
            return {}
        found, unused = systemd.match([(p.host, p.port) for p in passed], wanted)
        for index in unused:
            logger.warning(
                "the socket passed by the service manager on %s matches no binding: closed",
                passed[index].describe(),
            )
            passed[index].sock.close()
        for which in found.values():
            logger.info(
                "listening on the socket passed by the service manager: %s",
                passed[which].describe(),
            )
        return {index: passed[which].sock for index, which in found.items()}

    def serving(self, addresses: Sequence[tuple[str, int]], apps: int) -> None:
        """Every binding listens and the applications are started. ``DutyError`` when the
        pid file cannot be written."""
        if self.pid_file is not None:
            try:
                pidfile.write(self.pid_file)
            except OSError as exc:
                raise DutyError(
                    f"cannot write the pid file {self.pid_file}: {exc.strerror or exc}"
                ) from None
            self._pid_written = True
        if self.notifier is not None:
            self.notifier.ready(_serving_status(addresses, apps))
            interval = self._environment.watchdog_interval
            if interval is not None:
                self._watchdog = asyncio.get_running_loop().call_later(interval, self._ping)

    def _ping(self) -> None:
        """The watchdog: alive while the event loop turns."""
        if self.notifier is None:
            return
        self.notifier.watchdog()
        interval = self._environment.watchdog_interval
        assert interval is not None
        self._watchdog = asyncio.get_running_loop().call_later(interval, self._ping)

    # -- reloading and reopening ---------------------------------------------------------------

    def reloading(self, reason: str) -> None:
        if self.notifier is not None:
            self.notifier.reloading(f"reloading the configuration ({reason})")

    def reloaded(self, ok: bool, addresses: Sequence[tuple[str, int]], apps: int) -> None:
        if self.notifier is not None:
            status = _serving_status(addresses, apps)
            if not ok:
                status += "; the last reload was refused (configuration errors, see the log)"
            self.notifier.ready(status)

    def settings_changed(self, old: FrontSettings, new: FrontSettings) -> None:
        """A reload changed the server settings: the logs are set up again when theirs
        changed (a file that cannot be opened is logged; the old destination stays)."""
        if any(getattr(old, name) != getattr(new, name) for name in LOG_SETTINGS):
            try:
                configure_logs(new)
            except DutyError as exc:
                logger.error("%s; the access log stays as it was", exc)
        if old.pid_file != new.pid_file:
            logger.warning("pid_file changed: it takes effect when corral is restarted")

    def reopen_logs(self) -> None:
        """SIGUSR1: open the access log's file again at its path."""
        try:
            logger.info("SIGUSR1: %s", logs.reopen_access_log())
        except OSError as exc:
            logger.error("SIGUSR1: cannot reopen the access log: %s; it stays as it was", exc)

    # -- stopping ------------------------------------------------------------------------------

    def stopping(self, grace: float) -> None:
        if self.notifier is not None:
            self.notifier.stopping(f"stopping: finishing requests in flight (up to {grace:.0f} s)")

    def stopped(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.pid_file is not None and self._pid_written:
            try:
                pidfile.remove(self.pid_file)
            except OSError as exc:
                logger.warning("cannot remove the pid file %s: %s", self.pid_file, exc)
        if self.notifier is not None:
            self.notifier.close()
            self.notifier = None


def _serving_status(addresses: Sequence[tuple[str, int]], apps: int) -> str:
    shown = ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in addresses)
    return f"serving {apps} application{'s' if apps != 1 else ''} on {shown or 'no address'}"
