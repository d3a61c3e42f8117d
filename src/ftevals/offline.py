"""No network unless asked: models come from local folders, and nothing phones home.

`hub_offline()` runs before anything that loads transformers, peft or vLLM. It turns on the
Hugging Face hub's offline mode and switches off the telemetry of the hub and of vLLM (vLLM posts
usage statistics to its own server from every engine start unless told not to). Each variable is
only a default: a user who sets `HF_HUB_OFFLINE=0` has asked for the hub and gets it.

huggingface_hub reads `HF_HUB_OFFLINE` once, when it is first imported. If something imported it
before us (a conftest, a notebook, a user's own code), setting the variable comes too late, so the
already-loaded module is switched as well.

Server backends (`openai`) still talk to the server URL they are given: that is the one network
call a configuration can ask for.
"""

from __future__ import annotations

import os
import sys

#: Variables set (when unset) before a model library loads, and why.
OFFLINE_DEFAULTS = {
    # Model folders are local; a missing file must be an error, not a download.
    "HF_HUB_OFFLINE": "1",
    # huggingface_hub's usage telemetry.
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # vLLM's usage statistics, sent from a thread of every engine start.
    "VLLM_NO_USAGE_STATS": "1",
}


def hub_offline() -> None:
    """Make the hub and vLLM stay offline unless the user's environment says otherwise."""
    user_chose = "HF_HUB_OFFLINE" in os.environ
    for name, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and not user_chose:
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


__all__ = ["OFFLINE_DEFAULTS", "hub_offline"]
