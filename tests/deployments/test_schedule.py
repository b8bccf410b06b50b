"""A config's schedule: validated before anything is deployed, and a deployment's parameters validate again."""

from __future__ import annotations

import pytest
from support import REPO

from bpcore.config.serial import to_dict
from bpcore.errors import ConfigError
from bpcore.kinds import load_config, validate

LINREG = REPO / "configs" / "linreg.yaml"


@pytest.mark.parametrize(("overrides", "expected"), [
    (["schedule.cron=61 * * * *"], "schedule.cron = '61 * * * *': not a five-field cron expression"),
    (["schedule.cron=0 3 * *"], "schedule.cron = '0 3 * *': not a five-field cron expression"),
    (["schedule.cron=0 3 * * *", "schedule.timezone=Mars/Base"], "schedule.timezone = 'Mars/Base': not an IANA"),
    (["schedule.interval=0"], "schedule.interval = 0: at least 10 s"),
    # runs every millisecond piled up 300 flow runs in 80 s; every 3 s, a hundred overlapping ones
    (["schedule.interval=0.001"], "schedule.interval = 0.001: at least 10 s"),
    (["schedule.interval=9.5"], "schedule.interval = 9.5: at least 10 s"),
    (['schedule.interval="60"'], "schedule.interval = '60': not a number of seconds"),
    (["schedule.interval=true"], "schedule.interval = True: not a number of seconds"),
    (["schedule.interval=60", "schedule.overlap=never"], "schedule.overlap = 'never': Input should be 'skip'"),
    (["schedule.interval=60", "schedule.cron=0 3 * * *"], "schedule.cron: give exactly one of"),
    (["schedule.interval=60", "schedule.timezone=UTC"], "schedule.timezone: applies to schedule.cron only"),
    (["schedule.every=60"], "schedule.every: unknown key"),
])
def test_bad_schedules_name_the_key(overrides, expected):
    with pytest.raises(ConfigError, match=expected.replace("*", r"\*").replace("(", r"\(")):
        load_config(LINREG, overrides)


@pytest.mark.parametrize("overrides", [["schedule.interval=10"], ["schedule.cron=0 3 * * 1-5"],
                                       ["schedule.interval=3600", "schedule.overlap=queue"],
                                       ['schedule.cron="*/15 * * * *"', "schedule.timezone=Europe/Paris"]])
def test_a_resolved_schedule_validates_again(overrides):
    """What bp deploy stores as the deployment's parameters is what a worker validates."""
    config = load_config(LINREG, overrides)
    assert validate(to_dict(config)) == config
    assert config.schedule.cron is None or config.schedule.timezone  # a cron is read in a named zone (UTC)


def test_an_unquoted_star_says_how_to_quote_it():
    expected = r"""--set schedule.cron: cannot parse value '\*/5 \* \* \* \*' as YAML \(quote"""
    with pytest.raises(ConfigError, match=expected):
        load_config(LINREG, ["schedule.cron=*/5 * * * *"])


def test_overlapping_runs_are_skipped_unless_the_config_says_otherwise():
    assert load_config(LINREG, ["schedule.interval=60"]).schedule.overlap == "skip"
    assert load_config(LINREG, ["schedule.interval=60", "schedule.overlap=allow"]).schedule.overlap == "allow"


def test_no_schedule_is_not_recorded():
    assert "schedule" not in to_dict(load_config(LINREG))


@pytest.mark.parametrize(("set_to", "expected"), [(None, 2.0), ("7", 7.0)])
def test_bp_serve_asks_for_due_runs_every_2_s_unless_prefect_is_told_otherwise(prefect_server, monkeypatch, set_to,
                                                                               expected):
    """Prefect's runner waits 10 s between looks for due runs; bp serve's looks every 2 s, as the stack's workers
    do, and PREFECT_RUNNER_POLL_FREQUENCY set is kept."""
    from contextlib import nullcontext

    from prefect.runner import Runner
    from prefect.settings import temporary_settings

    from flows.deployments import deploy

    if set_to is None:
        monkeypatch.delenv("PREFECT_RUNNER_POLL_FREQUENCY", raising=False)
    else:  # as a process started with it: in its environment, and so in Prefect's settings
        monkeypatch.setenv("PREFECT_RUNNER_POLL_FREQUENCY", set_to)
    seen = []

    async def start(self, *args, **kwargs):  # instead of serving: what the runner was made with
        seen.append(self.query_seconds)

    monkeypatch.setattr(Runner, "start", start)
    config = load_config(LINREG, ["schedule.interval=60"])
    with temporary_settings(updates={"runner.poll_frequency": int(set_to)}) if set_to else nullcontext():
        assert deploy.serve([("linreg", config)], announce=lambda line: None) == "SIGINT"
    assert seen == [expected]
