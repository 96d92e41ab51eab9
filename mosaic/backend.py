"""Where a run's calls go, as one object: the model string, the address, the offline reader's budget, the call
options, reachability, the concurrency limit's name and the tags of a run. Holds no secret: the API key is read
from the environment at call time."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from urllib.parse import urlparse

from pydantic import BaseModel

from .errors import BackendError
from .profiles import Profile, table_profile

OFFLINE_PROVIDER = "mosaic_offline"
OLLAMA_DEFAULT = "http://localhost:11434"
OFFLINE_BUDGET_RANGE = (32, 8192)


def is_ollama(model: str) -> bool:
    return model.startswith(("ollama/", "ollama_chat/"))


def offline_budget_of(model: str, default: int = 448) -> int | None:
    """The budget 'offline' or 'offline:896' names (None for any other model string)."""
    if model != "offline" and not model.startswith("offline:"):
        return None
    budget = model.partition(":")[2] or str(default)
    low, high = OFFLINE_BUDGET_RANGE
    if not budget.isdigit() or not low <= int(budget) <= high:
        raise ValueError(f"invalid offline budget in {model!r}: use offline or offline:PIXELS, e.g. offline:896")
    return int(budget)


def budget_in_name(name: str) -> int | None:
    """The budget a served offline reader states in its model name ('ocr-896', 'openai/ocr-896', 'offline:896')."""
    m = re.search(r"(?:^|/)(?:ocr-|offline:)(\d+)$", name)
    return int(m.group(1)) if m else None


def split_addresses(api_base: str | None) -> list[str]:
    """'http://a:8080/v1, http://b:8080/v1' (several servers of one model) as a list, each without a trailing /."""
    return list(dict.fromkeys(a.strip().rstrip("/") for a in (api_base or "").split(",") if a.strip()))


class Backend(BaseModel):
    model: str  # a LiteLLM model string; the built-in reader is mosaic_offline/ocr-<budget>
    api_base: str | None = None  # the first server's address
    servers: list[str] = []  # every server's address, when calls are spread over several (mosaic.servers)
    same_weights: bool = False  # the user says every address serves the same weights: the memo keys leave it out
    offline_budget: int | None = None  # set for the built-in reader, in this process
    temperature: float = 0.0
    max_tokens: int = 1024
    num_ctx: int | None = None
    timeout_s: float = 300.0
    structured_output: bool = True  # ask the server for JSON of the answer's shape (response_format)
    profile: Profile | None = None  # the model's habits as the settings or a probe name them; None: the table's

    @classmethod
    def create(cls, model: str, api_base: str | None = None, default_budget: int = 448, **options) -> Backend:
        """'offline' and 'offline:896' name the built-in reader; anything else is a LiteLLM model string.
        api_base may name several servers of the model, comma-separated. Raises ValueError for a bad offline budget."""
        budget = offline_budget_of(model, default_budget)
        if budget is not None:
            model = f"{OFFLINE_PROVIDER}/ocr-{budget}"
        elif model.startswith(OFFLINE_PROVIDER + "/"):
            budget = budget_in_name(model) or default_budget
        addresses = split_addresses(api_base)
        return cls(model=model, api_base=addresses[0] if addresses else None,
                   servers=addresses if len(addresses) > 1 else [], offline_budget=budget,
                   **{k: v for k, v in options.items() if v is not None})

    @property
    def addresses(self) -> list[str]:
        """Every server calls go to (one, unless several were given)."""
        return self.servers or ([self.api_base] if self.api_base else [])

    @property
    def pooled(self) -> bool:
        """Calls are sent by a ServerPool, which chooses the address of each (mosaic.servers)."""
        return len(self.servers) > 1 or (self.same_weights and self.api_base is not None)

    @property
    def memo_address(self) -> str | None:
        """The address in a call's memo key: none when the servers serve the same weights (the model is the
        identity); else the address, or for several servers all of them (which one answered is not known
        before the call)."""
        if self.same_weights:
            return None
        return ",".join(sorted(self.servers)) if self.servers else self.api_base

    @property
    def model_profile(self) -> Profile:
        """How this model writes boxes and what its server takes (mosaic.profiles)."""
        return self.profile or table_profile(self.model)

    @property
    def is_offline(self) -> bool:
        """The built-in reader, called in this process (not one served over HTTP)."""
        return self.offline_budget is not None

    @property
    def is_ollama(self) -> bool:
        return is_ollama(self.model)

    @property
    def asks_for_schema(self) -> bool:
        """The built-in reader answers in its own JSON; a server is asked to keep to the answer's schema."""
        return self.structured_output and not self.is_offline

    @property
    def address(self) -> str:
        """Where calls go, for messages."""
        if self.api_base:
            return ", ".join(self.addresses)
        if self.is_ollama:
            return OLLAMA_DEFAULT
        if self.is_offline:
            return "the built-in offline reader"
        return f"the {self.model.split('/')[0]} provider's default address"

    @property
    def network_address(self) -> str | None:
        """The address a socket reaches, if Mosaic knows it."""
        return self.api_base or (OLLAMA_DEFAULT if self.is_ollama else None)

    def call_options(self) -> dict:
        options: dict = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.is_ollama and self.num_ctx:
            options["num_ctx"] = self.num_ctx
        return options

    @property
    def limit_name(self) -> str | None:
        """The name of the concurrency limit shared by every run calling the (first) address; None for the
        in-process reader."""
        return self.limit_name_of(None)

    def limit_name_of(self, address: str | None) -> str | None:
        """The concurrency limit of one of the servers (the first when None)."""
        if self.is_offline and not self.api_base:
            return None
        address = address or self.network_address or self.model.split("/")[0] + "-default"
        address = re.sub(r"^[a-z]+://", "", address.lower())
        return "mosaic-backend-" + (re.sub(r"[^a-z0-9]+", "-", address).strip("-")[:80] or "default")

    def tags(self, model_as_given: str | None = None) -> list[str]:
        """Tags of an image run in Prefect: which model, at which address (one tag per server)."""
        addresses = self.addresses or ["offline" if self.is_offline else OLLAMA_DEFAULT if self.is_ollama else "default"]
        return ["mosaic", f"model:{model_as_given or self.model}"] + [f"backend:{a}" for a in addresses]

    def check_reachable(self, timeout_s: float = 3.0) -> None:
        """Fail fast, naming the address, when a local backend's port does not answer; of several servers, when
        none answers (a server that is down is cooled down and the others take its calls)."""
        if len(self.servers) > 1:
            errors = []
            for address in self.servers:
                try:
                    self.model_copy(update={"api_base": address, "servers": []}).check_reachable(timeout_s)
                    return
                except BackendError as e:
                    errors.append(str(e))
            raise BackendError("no server answers: " + "; ".join(errors), retryable=False)
        address = self.network_address
        if not address:
            return
        url = urlparse(address if "://" in address else f"http://{address}")
        if not url.hostname:
            raise BackendError(f"invalid backend address {address!r}: use e.g. http://127.0.0.1:8080/v1", retryable=False)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            with socket.create_connection((url.hostname, port), timeout=timeout_s):
                pass
        except OSError as e:
            reason = e.strerror or type(e).__name__
            raise BackendError(f"cannot reach the backend at {address}: {reason.lower()}", retryable=False) from None

    def reported_encoder_px(self, timeout_s: float = 3.0) -> int | None:
        """The image size an Ollama server says the model's vision encoder takes (/api/show: '<family>.vision.
        image_size' in model_info, or 'clip.vision.image_size' for a separate projector); None for other backends,
        or when the server does not say or cannot be asked."""
        if not self.is_ollama:
            return None
        request = urllib.request.Request((self.api_base or OLLAMA_DEFAULT).rstrip("/") + "/api/show",
                                         json.dumps({"model": self.model.split("/", 1)[1]}).encode(),
                                         {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return vision_image_size(json.loads(response.read()))
        except (OSError, ValueError):
            return None


def vision_image_size(shown: object) -> int | None:
    """The encoder size in an Ollama /api/show answer, if it states one."""
    for section in ("model_info", "projector_info"):
        info = shown.get(section) if isinstance(shown, dict) else None
        for key, value in (info.items() if isinstance(info, dict) else ()):
            if key.endswith("vision.image_size") and isinstance(value, int) and 32 <= value <= 8192:
                return value
    return None
