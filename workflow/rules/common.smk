import json
import os

from sftrl import set_offline_env
from sftrl.config import validate_config
from sftrl.distributed import launch_command
from sftrl.plan import FIGURES, Plan, stage_resources
from sftrl.store import presentation_hash
from sftrl.train.resume import leave_warning_signal_to_jobs

set_offline_env()
leave_warning_signal_to_jobs()  # SLURM's --signal must reach the training job, not kill us

# Fails here, before any job, with the offending key named.
validate_config(config)
PLAN = Plan(config)
RESULTS = config["results"]


wildcard_constraints:
    id="[0-9a-f]{16}",


def parents_of(stage):
    """Input function: manifests of the artifacts the job reads."""
    return lambda w: PLAN.parent_manifests(PLAN.get(stage, w.id))


def spec_of(stage):
    """Params function: the job spec (dict) of the artifact with this id; threads, checkpoint
    interval and trackers travel beside it (they change no result)."""
    return lambda w, threads: {
        **PLAN.get(stage, w.id).spec(),
        "threads": threads,
        "checkpointing": config["checkpointing"],
        "logging": config["logging"],
    }


def spec_json(stage):
    """The job spec as JSON, for shell rules that call `python -m sftrl...`."""
    return lambda w, threads: json.dumps(spec_of(stage)(w, threads), sort_keys=True)


def res(stage, key):
    """Portable resources of a stage, from the config's `resources` section."""
    return stage_resources(config, stage)[key]


def launcher(stage):
    """`python` on one device; `accelerate launch` (from the config's `distributed` section)
    when a training job asks for several GPUs."""
    return launch_command(config["distributed"], res(stage, "gpu"))


def figure_settings(name):
    """One figure's settings: the shared theme plus its own section of `figures`."""
    settings = config["figures"]
    return {"theme": settings["theme"], **settings.get(name, {})}
