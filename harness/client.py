"""The chat client: one request to any OpenAI-compatible endpoint, one normalised `Reply` back.

Infrastructure errors (connection, timeout, 502/503/504, 429, other 500s) are retried with
backoff; everything else, model failures included, comes back as a `Reply` with its outcome set.
The OpenAI-compatible route posts the body it built, serialised once per step, over one aiohttp
session per target (keep-alive, a connection per request in flight): neither the openai SDK's per-call
transform nor httpx's per-request cost (2.7 ms of CPU against aiohttp's 0.35 ms at 32 in flight,
benchmarks/overhead.py) is on the hot path, nor httpx's import before the first request (the target check
uses aiohttp too; httpx serves the server identification in harness.servers and the Ollama client).
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import time
from typing import Any, Protocol

import pydantic_core
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from harness.normalize import error_message, is_server_parse_error, normalize_reply
from harness.outcomes import Outcome
from harness.records import Sampling, Target
from harness.safejson import load_json, sanitize
from harness.scrub import cap_text
from harness.trajectory import Reply

__all__ = [
    "ChatClient",
    "LiteLLMChatClient",
    "OpenAIChatClient",
    "RETRY_STATUSES",
    "TargetError",
    "build_request",
    "check_target",
    "make_client",
]

log = structlog.get_logger("harness.client")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses retried as infrastructure errors (a 500 that is a tool-call parse failure is not)."""

_BODY_LIMIT = 2000


class TargetError(Exception):
    """A target cannot be used: unreachable, not OpenAI-compatible, or it does not serve the model.

    The message is one paragraph for a person: what is wrong, where, and what to try.
    """

    exit_code: int = 3
    """The CLI's exit code: 3 (infrastructure: down, overloaded) unless the input is wrong (2)."""

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


_BAD_INPUT = 2


class ChatClient(Protocol):
    """What the loop and the CLI need from a client."""

    async def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], sampling: Sampling, *,
                   tool_choice: str | None = "auto") -> Reply:
        """One chat completion. Never raises for model or infrastructure failures."""
        ...

    async def list_models(self) -> list[str]:
        """Model ids from `GET /models`; raises `TargetError`."""
        ...

    async def aclose(self) -> None: ...


def make_client(target: Target, *, timeout_s: float = 120.0, retries: int = 3,
                wait_initial_s: float = 1.0, wait_max_s: float = 20.0) -> ChatClient:
    """A client for `target`: plain OpenAI-compatible HTTP, litellm when `target.provider == "litellm"`,
    or LiteLLM's Router over all its endpoints when `target.endpoints` lists more than `base_url`.

    `retries` is how many times an infrastructure error is retried (so up to `retries + 1`
    attempts), waiting `wait_initial_s` doubling up to `wait_max_s` in between.
    """
    if target.endpoints:
        from harness.router import RouterChatClient

        cls: type[_Client] = RouterChatClient
    else:
        cls = LiteLLMChatClient if target.provider == "litellm" else OpenAIChatClient
    return cls(target, timeout_s=timeout_s, retries=retries, wait_initial_s=wait_initial_s, wait_max_s=wait_max_s)


def build_request(model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]], sampling: Sampling,
                  tool_choice: str | None = "auto") -> dict[str, Any]:
    """The chat completion request body. Sampling is always explicit: servers' defaults differ."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
    }
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if tools:
        body["tools"] = tools
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
    elif tool_choice not in (None, "auto", "none"):
        # a forced choice with nothing to choose from is a harness bug, not a server problem
        raise ValueError(f"tool_choice={tool_choice!r} needs tools")
    return body


class _Transient(Exception):
    """An attempt failed for a reason worth retrying; carries the reply to return if retries run out."""

    def __init__(self, reply: Reply, retry_after: float | None = None):
        super().__init__(reply.error)
        self.reply = reply
        self.retry_after = retry_after


class _Client:
    """Shared retry loop and logging; subclasses make one attempt."""

    def __init__(self, target: Target, *, timeout_s: float, retries: int, wait_initial_s: float, wait_max_s: float):
        self.target = target
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.wait_initial_s = wait_initial_s
        self.wait_max_s = wait_max_s
        self._log = log.bind(target=target.name, model=target.model)

    async def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], sampling: Sampling, *,
                   tool_choice: str | None = "auto") -> Reply:
        body = build_request(self.target.model, messages, tools, sampling, tool_choice)
        attempts = 0

        async def attempt() -> Reply:
            nonlocal attempts
            attempts += 1
            self._log.debug("client.request", attempt=attempts, messages=len(messages), tools=len(tools))
            try:
                # a wall-clock deadline: the SDK's timeout is per read, so a server trickling bytes never trips it
                async with asyncio.timeout(self.timeout_s):
                    return await self._attempt(body)
            except TimeoutError:
                raise _Transient(Reply(outcome=Outcome.INFRA_ERROR, request=_snapshot(body),
                                       error=f"no complete reply from {self.target.base_url} within "
                                             f"{self.timeout_s:g}s (timeout)")) from None

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            reply = await retrying(attempt)
        except _Transient as exc:
            reply = exc.reply
            reply = reply.model_copy(update={"error": f"{reply.error} (gave up after {attempts} attempts)"})
        reply = reply.model_copy(update={"attempts": attempts})
        # every reply is in results.jsonl: the log keeps the ones worth a look (retried, failed on the way
        # in) at info, the rest at debug (written with --verbose)
        notable = attempts > 1 or reply.outcome is Outcome.INFRA_ERROR
        emit = self._log.info if notable else self._log.debug
        emit("client.reply", attempts=attempts, status=reply.status_code, outcome=str(reply.outcome),
             latency_ms=round(reply.latency_ms) if reply.latency_ms is not None else None,
             calls=[c.name for c in reply.tool_calls], error=reply.error)
        return reply

    def _wait(self, state: RetryCallState) -> float:
        wait = min(self.wait_max_s, self.wait_initial_s * 2 ** (state.attempt_number - 1))
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            # honour Retry-After (429/503), within the same cap
            wait = max(wait, min(exc.retry_after, self.wait_max_s))
        return wait

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        reply = exc.reply if isinstance(exc, _Transient) else None
        self._log.warning("client.retry", attempt=state.attempt_number, status=reply.status_code if reply else None,
                          error=reply.error if reply else repr(exc),
                          wait_s=round(state.next_action.sleep, 3) if state.next_action else None)

    async def _attempt(self, body: dict[str, Any]) -> Reply:
        raise NotImplementedError

    async def list_models(self) -> list[str]:
        """Model ids from `GET {base_url}/models`; raises `TargetError`."""
        return [m["id"] for m in await _fetch_models(self.target, timeout_s=min(self.timeout_s, 30.0))]

    async def aclose(self) -> None:
        pass

    async def __aenter__(self) -> _Client:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class OpenAIChatClient(_Client):
    """`POST {base_url}/chat/completions` over the target's own aiohttp session (keep-alive, one connection per request in flight).

    The body goes out exactly as `build_request` made it (built once per step), so the record of
    what was sent is that body, not a re-parse of the wire bytes.
    The openai SDK is not used here: its per-call request transform, response model and retry
    wrapper cost more than the rest of a step on a fast server (see benchmarks/overhead.py).
    Redirects are not followed; a proxy comes from the environment (HTTP(S)_PROXY, NO_PROXY), as with httpx.
    """

    def __init__(self, target: Target, **kwargs: Any):
        super().__init__(target, **kwargs)
        self._url, basic = _split_userinfo(target.base_url.rstrip("/") + "/chat/completions")
        # credentials in the URL (a proxy in front of the server) go as Basic auth in place of the key, as httpx sends them
        auth = f"Basic {basic}" if basic else f"Bearer {target.api_key or 'sk-none'}"
        self._headers = {"Authorization": auth, "Content-Type": "application/json"}
        self._tls = _tls_context(target.base_url)
        self._http: Any = None  # made on the first request, inside the event loop that runs it
        self._proxy: tuple[Any, Any] = (None, None)
        self._loop: Any = None

    def _session(self) -> Any:
        import aiohttp

        loop = asyncio.get_running_loop()
        # a session belongs to the loop it was made in: a client used again under another asyncio.run gets a new one
        if self._http is None or self._http.closed or self._loop is not loop:
            self._loop = loop
            # no pool cap: the runner's semaphore bounds the requests in flight, each on its own connection.
            # The environment's proxy is looked up once here: aiohttp's trust_env would look it up (and
            # ~/.netrc) in a worker thread on every request, and those threads fight the loop for the GIL
            self._proxy = _env_proxy(self._url)
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ssl=self._tls if self._tls is not False else True),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout_s, sock_read=self.timeout_s),
            )
        return self._http

    async def _attempt(self, body: dict[str, Any]) -> Reply:
        import aiohttp

        sent = _snapshot(body)
        content = pydantic_core.to_json(body, fallback=str)
        started = time.perf_counter()
        try:
            async with self._session().post(self._url, data=content, headers=self._headers, allow_redirects=False,
                                            proxy=self._proxy[0], proxy_auth=self._proxy[1]) as resp:
                raw = await resp.read()
                status, headers, charset = resp.status, resp.headers, resp.charset
        except TimeoutError as exc:  # aiohttp's read and connect timeouts are TimeoutErrors
            raise _Transient(Reply(outcome=Outcome.INFRA_ERROR, request=sent,
                                   error=f"no reply from {self.target.base_url} within {self.timeout_s:g}s (timeout)")) from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            # refused, reset, a server that hung up, bytes that are not HTTP, or a URL aiohttp refuses
            raise _Transient(Reply(outcome=Outcome.INFRA_ERROR, request=sent,
                                   error=f"connection to {self.target.base_url} failed: {_cause(exc)}")) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        text = _decode(raw, charset)
        if status >= 400:
            return _status_failure(status, text, sent, self.target, retry_after=_retry_after(headers))
        try:
            # bounded: a 5000-digit number or JSON nested 100k deep is a bad body, not a crash
            data = load_json(text)
        except ValueError as exc:
            ctype = headers.get("content-type", "?")
            why = "is not JSON" if isinstance(exc, json.JSONDecodeError) else f"cannot be read ({exc})"
            return Reply(outcome=Outcome.INFRA_ERROR, request=sent, status_code=status, latency_ms=latency_ms,
                         response={"raw_text": cap_text(text, _BODY_LIMIT)},
                         error=f"HTTP {status} from {self.target.base_url} {why} ({ctype}): "
                               f"{_clip(text)!r}; is this an OpenAI-compatible endpoint (base_url usually ends in /v1)?")
        reply = normalize_reply(data, max_tokens=body.get("max_tokens"))
        # plain assignment: a model_copy per step costs more than the rest of this function
        reply.request, reply.status_code, reply.latency_ms = sent, status, latency_ms
        return reply

    async def aclose(self) -> None:
        if self._http is not None and not self._http.closed:
            await self._http.close()
        self._http = None


def _env_proxy(url: str) -> tuple[Any, Any]:
    """The proxy (and its credentials) HTTP(S)_PROXY and NO_PROXY name for `url`; (None, None) for none."""
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None


def _split_userinfo(url: str) -> tuple[str, str | None]:
    """`url` without its `user:password@`, and that userinfo as a Basic credential (None when there is none)."""
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return urlunsplit(parts._replace(netloc=netloc)), base64.b64encode(pair.encode()).decode()


def _decode(raw: bytes, charset: str | None) -> str:
    """The body as text: its declared charset, else UTF-8; bytes that do not decode become U+FFFD (as httpx does)."""
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", errors="replace")


class LiteLLMChatClient(_Client):
    """Routes through `litellm.acompletion` (e.g. model `openai/<name>` with `base_url` as api_base).

    litellm's exceptions subclass the OpenAI SDK's, so failures are classified the same way. Its
    response is dumped to a dict (non-standard fields such as `timings` survive the dump).
    """

    async def _attempt(self, body: dict[str, Any]) -> Reply:
        # lazily: importing litellm is slow, and offline it would try to fetch a price list
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm
        import openai

        litellm.suppress_debug_info = True
        sent = json.loads(json.dumps(body))  # a copy: the caller keeps appending to its messages
        started = time.perf_counter()
        try:
            response = await self._complete(litellm, body)
        except openai.APITimeoutError as exc:
            raise _Transient(Reply(outcome=Outcome.INFRA_ERROR, request=sent,
                                   error=f"no reply from {self.target.base_url} within {self.timeout_s:g}s (timeout)")) from exc
        except openai.APIConnectionError as exc:
            raise _Transient(Reply(outcome=Outcome.INFRA_ERROR, request=sent,
                                   error=f"connection to {self.target.base_url} failed: {_cause(exc)}")) from exc
        except openai.APIError as exc:
            # status errors, and litellm's own APIError that carries a status_code
            text = getattr(exc, "message", None) or str(exc)
            status = getattr(exc, "status_code", None)
            if isinstance(status, int):
                return _status_failure(status, text, sent, self.target)
            return Reply(outcome=Outcome.INFRA_ERROR, request=sent, error=f"litellm failed: {_clip(text)}")
        latency_ms = (time.perf_counter() - started) * 1000
        data = response.model_dump() if hasattr(response, "model_dump") else dict(response)
        reply = normalize_reply(data, max_tokens=body.get("max_tokens"))
        return reply.model_copy(update={"request": sent, "status_code": 200, "latency_ms": latency_ms})

    async def _complete(self, litellm: Any, body: dict[str, Any]) -> Any:
        """One completion through litellm (`harness.router` sends it through a Router instead)."""
        return await litellm.acompletion(
            **body, api_base=self.target.base_url, api_key=self.target.api_key or "sk-none",
            timeout=self.timeout_s, num_retries=0, max_retries=0,
        )


def _status_failure(status: int, text: str, sent: dict[str, Any], target: Target, *,
                    retry_after: float | None = None) -> Reply:
    """Classify an HTTP error reply: a model's failed tool call, a retryable infra error, or a final one."""
    text = sanitize(text) if isinstance(text, str) else text  # it ends up in the record
    try:
        body: Any = load_json(text)
    except (ValueError, TypeError):
        body = text
    message = _clip(error_message(body), _BODY_LIMIT) or _clip(text) or "(empty body)"
    response = body if isinstance(body, dict) else {"raw_text": cap_text(text or "", _BODY_LIMIT)}
    where = target.base_url
    # a parse failure says so near the start; scanning a 50 MB proxy page for it took 14 s
    if status >= 500 and is_server_parse_error((text or "")[:65_536]):
        return Reply(outcome=Outcome.SERVER_PARSE_ERROR, request=sent, response=response, status_code=status,
                     error=f"HTTP {status}: the server could not parse the model's tool call: {message}")
    reply = Reply(outcome=Outcome.INFRA_ERROR, request=sent, response=response, status_code=status,
                  error=f"HTTP {status} from {where}: {message}{_hint(status, message, target)}")
    if status in RETRY_STATUSES:
        raise _Transient(reply, retry_after=retry_after)
    return reply


def _hint(status: int, message: str, target: Target) -> str:
    low = message.lower()
    if "enable-auto-tool-choice" in low or ("tool choice" in low and "tool-call-parser" in low):
        return (" -- vLLM was started without tool calling; restart it with "
                "`--enable-auto-tool-choice --tool-call-parser <parser for this model>` (e.g. hermes for Qwen)")
    if status in (401, 403):
        return " -- the server rejected the API key; set the target's api_key"
    if status == 404:
        return f" -- is the model {target.model!r} served there, and does base_url end in /v1?"
    return ""


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _snapshot(body: dict[str, Any]) -> dict[str, Any]:
    """The body as sent, for the record: the caller keeps appending to `messages` (the dicts in it are not changed)."""
    return {**body, "messages": list(body.get("messages") or [])}


def _verify(base_url: str) -> bool:
    """TLS verification for https; plain http skips loading the CA bundle (a third of a second at start-up)."""
    return not base_url.lower().startswith("http://")


def _tls_context(base_url: str) -> Any:
    """One TLS context per target, shared by its connections (loading the CA bundle once); False for plain http."""
    if not _verify(base_url):
        return False
    import httpx  # only for https: its context is certifi's bundle with SSL_CERT_FILE honoured

    return httpx.create_ssl_context()


def _cause(exc: BaseException) -> str:
    """The root of a connection failure in words (httpx hides `ECONNREFUSED` a few causes down)."""
    chain: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and node not in chain and len(chain) < 10:
        chain.append(node)
        node = node.__cause__ or node.__context__
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    top = chain[1] if len(chain) > 1 else exc
    return f"{type(top).__name__}: {top}" if str(top) else type(top).__name__


def _clip(text: str | None, limit: int = 300) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- target checks ----------------------------------------------------------------------------


async def _get(url: str, headers: dict[str, str], timeout_s: float) -> tuple[int, str, str]:
    """One GET: status, content type, body text. Raises TimeoutError, or aiohttp.ClientError/OSError/ValueError
    when no HTTP answer came. aiohttp, like the hot path: httpx's import is not paid before the first request."""
    import aiohttp

    url, basic = _split_userinfo(url)
    if basic:
        headers = {**headers, "Authorization": f"Basic {basic}"}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    proxy, proxy_auth = _env_proxy(url)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(url, headers=headers, allow_redirects=False, ssl=_tls_context(url), proxy=proxy,
                            proxy_auth=proxy_auth) as resp:
            raw = await resp.read()
            return resp.status, resp.headers.get("content-type", ""), _decode(raw, resp.charset)


async def _fetch_models(target: Target, *, timeout_s: float) -> list[dict[str, Any]]:
    """`GET {base_url}/models` as a list of model entries (each with an `id`); raises `TargetError`."""
    import aiohttp

    url = target.base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    try:
        status, ctype, text = await _get(url, headers, timeout_s)
    except TimeoutError:
        raise TargetError(f"The server at {target.base_url} did not answer GET /models within {timeout_s:g}s. "
                          "It may still be loading the model or be overloaded; wait and try again, or raise the timeout.") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise TargetError(f"Cannot reach the server at {target.base_url}: {_cause(exc)}. "
                          "Is it running, and are the host and port in base_url right? For llama.cpp start "
                          "`llama-server -m model.gguf --jinja --port 8080` and use http://127.0.0.1:8080/v1.") from None
    if status != 200 and not target.base_url.rstrip("/").endswith("/v1"):
        await _missing_v1(target, status, headers, timeout_s)
    if status in (401, 403):
        raise TargetError(f"The server at {target.base_url} refused GET /models with HTTP {status}: "
                          f"{_clip(error_message(_json_or_text(text)))}. Set the target's api_key (it is sent as a Bearer token).")
    if status != 200:
        raise TargetError(f"GET {url} returned HTTP {status} ({ctype or 'no content type'}): {_clip(text)!r}. "
                          "This does not look like an OpenAI-compatible API; base_url usually ends in /v1 "
                          "(e.g. http://127.0.0.1:8080/v1 for llama.cpp, http://127.0.0.1:11434/v1 for Ollama).")
    data = _json_or_text(text)
    entries = data.get("data", data.get("models")) if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise TargetError(f"GET {url} answered, but not like an OpenAI-compatible server: expected JSON "
                          f'{{"data": [{{"id": ...}}]}}, got {ctype or "no content type"}: {_clip(text)!r}. '
                          "Check base_url; it usually ends in /v1.")
    out = []
    for entry in entries:
        ident = entry.get("id") or entry.get("model") or entry.get("name")
        if isinstance(ident, str):
            out.append({**entry, "id": ident})
    return out


async def _missing_v1(target: Target, status: int, headers: dict[str, str], timeout_s: float) -> None:
    """Raise a bad-input `TargetError` when the same server answers under `/v1` (Ollama, vLLM, llama.cpp all do)."""
    import aiohttp

    fixed = target.base_url.rstrip("/") + "/v1"
    try:
        code, _, text = await _get(fixed + "/models", headers, timeout_s)
        data = load_json(text) if code == 200 else None
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
        return
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        raise TargetError(f"base_url {target.base_url} is missing /v1: GET /models there answered HTTP {status}, "
                          f"while {fixed}/models lists the models. Use --base-url {fixed}", exit_code=_BAD_INPUT)


def _json_or_text(text: str) -> Any:
    try:
        return load_json(text)
    except ValueError:
        return text


def _model_served(wanted: str, entries: list[dict[str, Any]], provider: str) -> bool:
    ids = [e["id"] for e in entries]
    candidates = {wanted, wanted.lower()}
    if provider == "litellm" and "/" in wanted:
        # litellm's `openai/<name>` names the route, the server knows `<name>`
        tail = wanted.split("/", 1)[1]
        candidates |= {tail, tail.lower()}
    for ident in ids:
        forms = {ident, ident.lower(), os.path.basename(ident), os.path.basename(ident).lower()}
        # ollama lists `qwen2.5:7b` and `llama3:latest`; `llama3` means the latter
        if ident.endswith(":latest"):
            forms.add(ident[: -len(":latest")])
        if forms & candidates:
            return True
    # a single-model llama-server answers whatever model name a request carries
    return len(entries) == 1 and entries[0].get("owned_by") == "llamacpp"


async def check_target(target: Target, *, timeout_s: float = 10) -> list[str]:
    """Check that the target answers like an OpenAI-compatible server and serves its model.

    Returns the model ids the server lists. Raises `TargetError` with a paragraph saying what is
    wrong and where.
    """
    entries = await _fetch_models(target, timeout_s=timeout_s)
    ids = [e["id"] for e in entries]
    if not _model_served(target.model, entries, target.provider):
        if not ids and not target.base_url.rstrip("/").endswith("/v1"):
            await _missing_v1(target, 200, {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}, timeout_s)
        listed = ", ".join(repr(i) for i in ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
        close = difflib.get_close_matches(target.model, ids, n=1, cutoff=0.6)
        # a near miss is a typo; pulling the typo would not help
        hint = (f"Did you mean {close[0]!r}?" if close else
                f"Set the model to one of those ids (for Ollama, `ollama pull {target.model}` first).")
        raise TargetError(f"The server at {target.base_url} does not serve the model {target.model!r}; it lists "
                          f"{listed or 'no models at all'}. {hint}", exit_code=_BAD_INPUT)
    return ids
