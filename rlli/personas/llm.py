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
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlli.config import Settings
from rlli.personas.server import MODEL_NAME, LLMUnavailable, ensure_server

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


def resolve_endpoint(settings: Settings, model: str | None = None) -> Endpoint:
    """Where requests go: the configured URL, or the embedded server (started here when needed)."""
    if settings.llm_base_url.strip():
        return Endpoint(settings.llm_base_url.strip().rstrip("/"), (model or settings.llm_model).strip(), False)
    try:
        server = ensure_server(settings)
    except LLMUnavailable as e:
        raise LLMError("unavailable", str(e)) from None
    return Endpoint(server.base_url, model or settings.llm_model or MODEL_NAME, True)


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
        if settings.llm_response_format != "auto":
            self._formats = [settings.llm_response_format]
        else:  # llama-cpp-python's server knows json_object + schema (grammar-constrained), not json_schema
            self._formats = list(FORMATS[1:] if self.endpoint.embedded else FORMATS)
        self._images = {"on": True, "off": False}.get(settings.llm_images, not self.endpoint.embedded)
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
        """(parsed JSON, raw text) of one chat reply; raises :class:`LLMError`.

        A refused response format (HTTP 400/422) falls back to the next one, and a refused image to
        the text alone; both are remembered for later calls. ``user`` may be a function of whether the
        image goes along (so the text can say "the attached image" or describe it instead).
        """
        while True:
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
            try:
                resp = self._client.chat.completions.create(**kwargs)
            except self._openai.BadRequestError as e:
                if self._fall_back(fmt, with_image, e):
                    continue
                raise self._error(e) from None
            except self._openai.UnprocessableEntityError as e:
                if self._fall_back(fmt, with_image, e):
                    continue
                raise self._error(e) from None
            except self._openai.InternalServerError as e:  # some servers answer a refused field with HTTP 500
                if "response_format" in str(e) and self._fall_back(fmt, False, e):
                    continue
                raise self._error(e) from None
            except Exception as e:  # noqa: BLE001 - mapped to a status and cause
                raise self._error(e) from None
            return self._parse(resp)

    def _fall_back(self, fmt: str, with_image: bool, e: Exception) -> bool:
        message = str(e).lower()
        with self._lock:
            if with_image and self.settings.llm_images == "auto" and "image" in message:
                self._images = False
                return True
            if self.settings.llm_response_format == "auto" and len(self._formats) > 1 and self._formats[0] == fmt:
                self._formats.pop(0)
                return True
        return False

    def _parse(self, resp) -> tuple[Any, str]:
        try:
            text = resp.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            raise LLMError("invalid", "the endpoint's reply has no message") from None
        try:
            return extract_json(text), text
        except ValueError:
            raise LLMError("invalid", f"the reply is not JSON: {self._scrub(text[:160])!r}") from None

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
