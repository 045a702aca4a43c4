import json
import os

from sftrl.config import validate_config
from sftrl.plan import FIGURES, Plan
from sftrl.store import presentation_hash

# Offline and quiet: nothing may be downloaded, and telemetry pings would hang offline.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_name, _value)

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
    """Params function: the job spec (dict) of the artifact with this id."""
    return lambda w, threads: {**PLAN.get(stage, w.id).spec(), "threads": threads}


def spec_json(stage):
    """The job spec as JSON, for shell rules that call `python -m sftrl...`."""
    return lambda w, threads: json.dumps(spec_of(stage)(w, threads), sort_keys=True)


def res(stage, key):
    """Portable resources of a stage, from the config's `resources` section."""
    merged = {**config["resources"]["default"], **config["resources"].get(stage, {})}
    return merged[key]


def launcher(stage):
    """`python` on one device; `accelerate launch` when a training job asks for several GPUs."""
    gpus = res(stage, "gpu")
    if gpus > 1:
        accelerate_config = os.path.join(
            workflow.basedir, "configs/accelerate/multi-gpu.yaml"
        )
        return f"accelerate launch --num_processes {gpus} --config_file {accelerate_config}"
    return "python"


def figure_settings(name):
    """One figure's settings: the shared theme plus its own section of `figures`."""
    settings = config["figures"]
    return {"theme": settings["theme"], **settings.get(name, {})}
