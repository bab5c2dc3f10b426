"""A site's bindings when its table writes none: those of the applicationHost.config
``<site>`` of the same name (IIS's ``<bindings>``, and its ``<hsts>``); a site with neither is
an error. For the server file's sites and for included site files alike (``config.include``:
they have no applicationHost.config of their own, so they name their bindings)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from corral.config.errors import Problems
from corral.config.servercfg import ZooServer
from corral.config.tomlfile import SiteDecl


def with_bindings(
    sites: Iterable[SiteDecl], zoo: ZooServer | None, problems: Problems
) -> list[SiteDecl]:
    """The sites with their bindings: a site's table without ``bindings`` takes those of the
    applicationHost.config ``<site>`` of the same name (IIS's ``<bindings>``); a site with
    neither is an error. Likewise ``https_redirect`` and ``hsts`` from that site's ``<hsts>``."""
    result: list[SiteDecl] = []
    for site in sites:
        iis = zoo.sites.get(site.name) if zoo is not None else None
        if not site.bindings_written:
            if iis is None:
                problems.add(site.location, "bindings", f"site {site.name!r} has no binding")
            else:
                site = dataclasses.replace(site, bindings=iis.bindings)
                for where, setting, message in iis.errors:
                    problems.add(where, setting, message)
        if iis is not None and site.https_redirect is None:
            site = dataclasses.replace(site, https_redirect=iis.https_redirect)
        if iis is not None and site.hsts is None:
            site = dataclasses.replace(site, hsts=iis.hsts)
        result.append(site)
    return result
