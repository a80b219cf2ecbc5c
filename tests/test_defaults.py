"""One source per default (gencompress/defaults.py): every option, config and table agrees with it."""
from __future__ import annotations

import click

from gencompress import defaults


def _option(command: click.Command, name: str) -> click.Option:
    return next(p for p in command.params if isinstance(p, click.Option) and name in p.opts)


def test_jetson_table_describes_exactly_the_jetson_targets():
    from gencompress.benchmarks import devices
    from gencompress.benchmarks.build_speed import ESTIMATE_PROFILES
    from gencompress.export.jetson import JETSON_TARGETS

    assert tuple(JETSON_TARGETS) == defaults.JETSON_TARGETS
    assert set(ESTIMATE_PROFILES) == set(defaults.TENSORRT_TARGETS)
    for profile in ESTIMATE_PROFILES.values():
        devices.get(profile)  # raises for an unknown profile


def test_cli_choices_and_stage_configs_read_the_defaults():
    from gencompress.cli.build_cmd import build
    from gencompress.cli.export_cmd import export
    from gencompress.cli.pipeline import BuildConfig
    from gencompress.cli.prune_cmd import prune
    from gencompress.cli.quantize_cmd import quantize
    from gencompress.compress import DistillConfig, PruneConfig, QuantConfig
    from gencompress.compress.quantize import CALIBRATORS
    from gencompress.export.stage import EXPORT_TARGETS

    for command in (build, export):
        target = _option(command, "--target")
        assert tuple(target.type.choices) == defaults.TARGETS and target.default == defaults.DEFAULT_TARGET
    assert tuple(_option(export, "--precision").type.choices) == defaults.PRECISIONS
    calibrator = _option(quantize, "--calibrator")
    assert tuple(calibrator.type.choices) == defaults.CALIBRATOR_CHOICES == ("auto", *CALIBRATORS)
    assert calibrator.default == defaults.DEFAULT_CALIBRATOR == QuantConfig().calibrator
    steps = {_option(build, "--distill-steps").default, _option(prune, "--distill-steps").default,
             BuildConfig().distill_steps, PruneConfig(ratio=0.5).distill_steps, DistillConfig().steps}
    assert steps == {defaults.DISTILL_STEPS}
    assert EXPORT_TARGETS == defaults.TARGETS
