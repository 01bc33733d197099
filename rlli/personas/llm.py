"""One chat call that must return JSON, through the ``openai`` client against any OpenAI-compatible endpoint.

:class:`LLMClient` resolves the endpoint (``RLLI_LLM_BASE_URL``, or the embedded server when empty),
asks for JSON constrained by a schema where the server supports it (OpenAI's ``json_schema``
response format; llama.cpp's ``json_object`` with a ``schema``; a plain JSON object; else
instructions alone - the first the server accepts is remembered), and turns every failure into an
:class:`LLMError` with a status (``timeout``, ``unavailable``, ``invalid``, ``error``) and a cause.
The API key goes only into the request header; causes are scrubbed of it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rlli.config import Settings
from rlli.personas.server import MODEL_NAME, LLMUnavailable, ensure_servers

FORMATS = ("json_schema", "json_object", "json_object_plain", "none")


class LLMError(Exception):
    """A call that produced no usable answer. ``status`` is one of the Rating statuses."""

    def __init__(self, status: str, cause: str):
        super().__init__(cause)
        self.status = status
        self.cause = cause


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    embedded: bool
    slots: tuple[str, ...] = ()  # the embedded server's slot URLs (one request at a time each); () = just base_url


def resolve_endpoint(settings: Settings, model: str | None = None) -> Endpoint:
    """Where requests go: the configured URL, or the embedded server's slots (started here when needed)."""
    if settings.llm_base_url.strip():
        return Endpoint(settings.llm_base_url.strip().rstrip("/"), (model or settings.llm_model).strip(), False)
    try:
        servers = ensure_servers(settings)
    except LLMUnavailable as e:
        raise LLMError("unavailable", str(e)) from None
    return Endpoint(servers[0].base_url, model or settings.llm_model or MODEL_NAME, True,
                    tuple(s.base_url for s in servers))


@dataclass(frozen=True)
class Reply:
    """One chat reply: the parsed JSON, the raw text and how it ended.

    ``finish_reason`` is the endpoint's ("stop", "length", ...); ``with_image`` whether the pixels were
    sent; ``user`` the exact user text sent; ``logprobs`` the per-token log probabilities
    ([{"token", "logprob", "top": {token: logprob}}], empty when the endpoint gives none);
    ``request_hash`` a SHA-256 over the exact request (model, messages, image hash, sampling, format).
    """

    data: Any
    text: str
    finish_reason: str
    with_image: bool
    user: str
    request_hash: str
    response_format: str
    logprobs: list = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def request_hash(kwargs: dict, image_png: bytes | None) -> str:
    """SHA-256 over a chat request, with the image by its own hash (the same request, the same key)."""
    def strip(content):
        if isinstance(content, list):
            return [c if c.get("type") != "image_url" else {"type": "image_url"} for c in content]
        return content

    payload = {**kwargs, "messages": [{**m, "content": strip(m["content"])} for m in kwargs["messages"]],
               "image": hashlib.sha256(image_png).hexdigest() if image_png else ""}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def extract_json(text: str) -> Any:
    """The JSON value in a reply: the whole text, else the first {...} block (models add code fences)."""
    text = text.strip()
    try:
        return json.loads(text, strict=False)  # models put raw newlines inside strings
    except ValueError:
        pass
    m = re.search(r"\{.*\}", text, re.S)
    if m:
        try:
            return json.loads(m.group(0), strict=False)
        except ValueError:
            pass
    raise ValueError("the reply is not JSON")


class LLMClient:
    """A chat-completion client for one endpoint and model, safe to share between threads."""

    def __init__(self, settings: Settings, model: str | None = None):
        import openai

        self.settings = settings
        self.endpoint = resolve_endpoint(settings, model)
        self._secret = settings.llm_api_key.get_secret_value()
        self._openai = openai
        self._client = openai.OpenAI(base_url=self.endpoint.base_url, api_key=self._secret or "none",
                                     timeout=settings.llm_timeout_s, max_retries=0)
        # one client per embedded slot; a request takes a free slot and gives it back (a slot serves one at a time)
        self._slot_clients = [self._client] + [
            openai.OpenAI(base_url=url, api_key="none", timeout=settings.llm_timeout_s, max_retries=0)
            for url in self.endpoint.slots[1:]]
        self._free: queue.Queue[int] | None = None
        if self.endpoint.slots:  # only the embedded server has slots; a remote endpoint takes what the judge sends
            self._free = queue.Queue()
            for i in range(len(self._slot_clients)):
                self._free.put(i)
        if settings.llm_response_format != "auto":
            self._formats = [settings.llm_response_format]
        else:  # llama-cpp-python's server knows json_object + schema (grammar-constrained), not json_schema
            self._formats = list(FORMATS[1:] if self.endpoint.embedded else FORMATS)
        # the embedded server sees pixels only with a local vision model's projector (RLLI_LLM_MMPROJ)
        self._images = {"on": True, "off": False}.get(settings.llm_images,
                                                      not self.endpoint.embedded or bool(settings.llm_mmproj))
        self._logprobs = True  # asked for until the endpoint refuses them
        self._lock = threading.Lock()
        self._model = self.endpoint.model

    # ------------------------------------------------------------------ facts about the endpoint

    @property
    def model(self) -> str:
        if not self._model:
            self._model = self._first_model()
        return self._model

    @property
    def accepts_images(self) -> bool:
        return self._images

    @property
    def response_format(self) -> str:
        return self._formats[0]

    def _first_model(self) -> str:
        try:
            models = self._client.models.list()
            return models.data[0].id
        except Exception as e:  # noqa: BLE001 - any failure here means: no model to talk to
            raise self._error(e, "listing the endpoint's models (set RLLI_LLM_MODEL)") from None

    # ------------------------------------------------------------------ the call

    def chat_json(self, system: str, user: str | Callable[[bool], str], schema: dict, *, name: str = "reply",
                  image_png: bytes | None = None,
                  temperature: float = 0.0, seed: int = 0, max_tokens: int | None = None) -> tuple[Any, str]:
        """(parsed JSON, raw text) of one chat reply; raises :class:`LLMError` (see :meth:`chat`)."""
        r = self.chat(system, user, schema, name=name, image_png=image_png, temperature=temperature, seed=seed,
                      max_tokens=max_tokens)
        return r.data, r.text

    def prepare(self, system: str, user: str | Callable[[bool], str], schema: dict, *, name: str = "reply",
                image_png: bytes | None = None, temperature: float = 0.0, seed: int = 0,
                max_tokens: int | None = None, logprobs: bool = False) -> tuple[dict, bool, str]:
        """(request keyword arguments, whether the image goes along, the user text) as :meth:`chat` would send them."""
        fmt = self._formats[0]
        with_image = image_png is not None and self._images
        text = user(with_image) if callable(user) else user
        content: Any = text
        if with_image:
            url = "data:image/png;base64," + base64.b64encode(image_png).decode()
            content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]
        kwargs: dict[str, Any] = {
            "model": self.model, "temperature": temperature, "seed": seed,
            "max_tokens": max_tokens or self.settings.llm_max_tokens,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": content}],
        }
        if fmt != "none":
            kwargs["response_format"] = _response_format(fmt, schema, name)
        if logprobs and self._logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = 10
        return kwargs, with_image, text

    def chat(self, system: str, user: str | Callable[[bool], str], schema: dict, *, name: str = "reply",
             image_png: bytes | None = None, temperature: float = 0.0, seed: int = 0, max_tokens: int | None = None,
             logprobs: bool = False) -> Reply:
        """One chat reply as a :class:`Reply`; raises :class:`LLMError`.

        A refused response format (HTTP 400/422) falls back to the next one, a refused image to the text
        alone, refused log probabilities to none; each is remembered for later calls. ``user`` may be a
        function of whether the image goes along (so the text can say "the attached image" or describe it).
        """
        while True:
            fmt = self._formats[0]
            kwargs, with_image, text = self.prepare(system, user, schema, name=name, image_png=image_png,
                                                    temperature=temperature, seed=seed, max_tokens=max_tokens,
                                                    logprobs=logprobs)
            slot = self._free.get() if self._free is not None else 0
            try:
                resp = self._slot_clients[slot].chat.completions.create(**kwargs)
            except self._openai.BadRequestError as e:
                if self._fall_back(fmt, with_image, e, "logprobs" in kwargs):
                    continue
                raise self._error(e) from None
            except self._openai.UnprocessableEntityError as e:
                if self._fall_back(fmt, with_image, e, "logprobs" in kwargs):
                    continue
                raise self._error(e) from None
            except self._openai.InternalServerError as e:  # some servers answer a refused field with HTTP 500
                if "response_format" in str(e) and self._fall_back(fmt, False, e):
                    continue
                raise self._error(e) from None
            except Exception as e:  # noqa: BLE001 - mapped to a status and cause
                raise self._error(e) from None
            finally:
                if self._free is not None:
                    self._free.put(slot)
            return self._parse(resp, kwargs, with_image, text, image_png, fmt)

    def _fall_back(self, fmt: str, with_image: bool, e: Exception, asked_logprobs: bool = False) -> bool:
        message = str(e).lower()
        with self._lock:
            if asked_logprobs and "logprob" in message:
                self._logprobs = False
                return True
            if with_image and self.settings.llm_images == "auto" and "image" in message:
                self._images = False
                return True
            if self.settings.llm_response_format == "auto" and len(self._formats) > 1 and self._formats[0] == fmt:
                self._formats.pop(0)
                return True
        return False

    def _parse(self, resp, kwargs: dict, with_image: bool, user: str, image_png: bytes | None, fmt: str) -> Reply:
        try:
            choice = resp.choices[0]
            text = choice.message.content or ""
        except (AttributeError, IndexError, TypeError):
            raise LLMError("invalid", "the endpoint's reply has no message") from None
        finish = str(getattr(choice, "finish_reason", "") or "")
        try:
            data = extract_json(text)
        except ValueError:
            cut = " (cut off at max_tokens)" if finish == "length" else ""
            raise LLMError("invalid", f"the reply is not JSON{cut}: {self._scrub(text[:160])!r}") from None
        usage = getattr(resp, "usage", None)
        return Reply(data, text, finish, with_image, user, request_hash(kwargs, image_png), fmt,
                     _token_logprobs(choice), getattr(usage, "prompt_tokens", None),
                     getattr(usage, "completion_tokens", None))

    # ------------------------------------------------------------------ errors

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _error(self, e: Exception, doing: str = "") -> LLMError:
        o = self._openai
        where = f"{self.endpoint.base_url}" + (f" ({doing})" if doing else "")
        if isinstance(e, o.APITimeoutError):
            return LLMError("timeout", f"no reply from {where} within {self.settings.llm_timeout_s:g} s "
                                       "(RLLI_LLM_TIMEOUT_S)")
        if isinstance(e, o.APIConnectionError):
            return LLMError("unavailable", f"cannot reach {where}: {self._scrub(str(e.__cause__ or e))[:200]}")
        if isinstance(e, o.AuthenticationError | o.PermissionDeniedError):
            return LLMError("error", f"{where} refused the API key (check RLLI_LLM_API_KEY)")
        if isinstance(e, o.NotFoundError):
            return LLMError("error", f"{where}: model {self._model!r} or the URL was not found (check RLLI_LLM_MODEL "
                                     "and RLLI_LLM_BASE_URL, which usually ends in /v1)")
        if isinstance(e, o.RateLimitError | o.InternalServerError):
            return LLMError("unavailable", f"{where} is overloaded or failing (HTTP {getattr(e, 'status_code', '?')})")
        if isinstance(e, o.APIResponseValidationError):
            return LLMError("invalid", f"{where} sent a malformed reply: {self._scrub(str(e))[:160]}")
        if isinstance(e, o.APIStatusError):
            return LLMError("error", f"{where} answered HTTP {e.status_code}: {self._scrub(str(e))[:200]}")
        if isinstance(e, LLMError):
            return e
        return LLMError("error", f"{where}: {type(e).__name__}: {self._scrub(str(e))[:200]}")


def _token_logprobs(choice) -> list[dict]:
    """[{"token", "logprob", "top": {token: logprob}}] from an OpenAI-shaped choice; [] when it has none."""
    lp = getattr(choice, "logprobs", None)
    content = getattr(lp, "content", None) if lp is not None else None
    if not content:
        return []
    out = []
    for t in content:
        try:
            top = {str(x.token): float(x.logprob) for x in (getattr(t, "top_logprobs", None) or [])}
            out.append({"token": str(t.token), "logprob": float(t.logprob), "top": top})
        except (AttributeError, TypeError, ValueError):
            return []
    return out


def _response_format(fmt: str, schema: dict, name: str) -> dict:
    if fmt == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
    if fmt == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"}


def client_for(settings: Settings, model: str | None = None) -> LLMClient:
    """A client, or :class:`LLMError` (status ``unavailable``) when the endpoint cannot be set up."""
    try:
        return LLMClient(settings, model)
    except LLMError:
        raise
    except Exception as e:  # noqa: BLE001 - a bad URL and the like
        raise LLMError("error", f"cannot set up the LLM client: {type(e).__name__}: {e}") from None
