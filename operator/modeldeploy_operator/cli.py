"""`modeldeploy operator`: validate the settings, then run the kopf operator."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import kopf

from modeldeploy_operator.settings import SettingsError, parse_settings


def main(argv: Sequence[str]) -> int:
    try:
        settings = parse_settings(argv)
    except SettingsError as error:
        print(f"modeldeploy operator: {error}", file=sys.stderr)
        return 2
    kopf.configure(
        verbose=False,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN,
        log_prefix=False,
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    # kopf logs every handled watch event at INFO; ours are triggers, worth no line each.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    from modeldeploy_operator import handlers  # noqa: F401, PLC0415  (importing registers the handlers)

    kopf.run(
        standalone=True,
        clusterwide=settings.all_namespaces,
        namespaces=settings.namespaces,
        memo=kopf.Memo(settings=settings),
    )
    return 0
