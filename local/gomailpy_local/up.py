"""`gomail up`: the whole system on this machine, in one process tree, on loopback.

    LocalStack (SQS, SES, S3, SNS) started here unless the config points at AWS or a running server
    queues + dead-letter queues   created (gomail init), with the claim-check bucket on S3
    delivery status (DynamoDB)    off unless status.backend is dynamodb: then moto's server as
                                  a child process (moto comes with gomailpy-local) when no
                                  endpoint_url is set; a memory store cannot be shared by the
                                  API and pipeline processes, so `memory` means off here
    SMTP and SendGrid stand-ins   served by this process, one per provider instance (and one
                                  of each kind the config lacks); their control API flips
                                  faults; a Mailgun stand-in per Mailgun instance configured
                                  (none by default: Mailgun needs a sending domain)
    API + web form                a `gomail api` child process
    pipeline nodes                `pipeline` child processes (--nodes N)

It prints where everything is, then a status line (queue depths, provider health, mail captured
per provider) until Ctrl-C, which stops the children, the stand-ins and LocalStack, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex
from typing import Any

import aiohttp
import yaml

from gomailpy.config.providers import LEGACY_NAMES, SECRET_KEYS
from gomailpy.config.settings import SECRET_PATHS, Settings, env_var_for, provider_var
from gomailpy.operating.report import node_status
from gomailpy.operating.resources import ensure_resources
from gomailpy.operating.up_state import UpState, remove_state, write_state
from gomailpy.queues.aws import is_loopback, open_aws_client
from gomailpy.queues.sqs import create_queue_client, queue_name
from gomailpy_local.localstack import LocalStack, free_port, health
from gomailpy_local.receiver import WebhookReceiver, banner_lines, with_local_receiver
from gomailpy_local.standins import MailgunStandIn, SendGridStandIn, SmtpStandIn
from gomailpy_local.standins.control import Controllable
from gomailpy_local.tls import self_signed_certificate

# Sender domains LocalStack's SES is told it may send for; other senders are refused by SES
# ("not verified"), which the pipeline treats as that provider's account problem: the email
# goes out through SMTP or SendGrid instead, which is what would happen on real SES.
VERIFIED_DOMAINS = ("example.com", "example.org", "gomailpy.local")
STANDIN_API_KEY = "SG.local-standin-key"

Echo = Callable[[str], None]


@dataclass
class UpOptions:
    nodes: int = 2
    api_port: int | None = None  # None: the config's; 0: any free port
    open_browser: bool = False
    status_interval_s: float = 1.0
    run_for_s: float | None = None  # stop by itself after this long (tests, demos)
    state_file: Path | None = None  # where the operator commands find this stack (up_state)


@dataclass
class Running:
    settings: Settings
    api_url: str
    admin_urls: list[str]
    standin_url: str
    endpoint_url: str | None
    smtp: SmtpStandIn  # the first SMTP instance's stand-in
    sendgrid: SendGridStandIn  # the first SendGrid instance's: it serves every control API
    standins: dict[str, SmtpStandIn | SendGridStandIn | MailgunStandIn] = field(
        default_factory=dict
    )  # by name
    children: list[asyncio.subprocess.Process] = field(default_factory=list)
    submission_port: int = 0  # `gomail smtp`: SMTP submission (STARTTLS, AUTH apikey/<key>)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # As a server binds: connections of a server that just stopped linger in TIME_WAIT
        # for a minute, and without this the port would look taken when it is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


async def _start_localstack(stack: AsyncExitStack, settings: Settings, echo: Echo) -> str | None:
    """The SQS endpoint to use, starting LocalStack when the config asks for a local one."""
    endpoint = settings.aws.endpoint_url
    if endpoint is not None and not is_loopback(endpoint):
        echo(f"using the configured AWS endpoint {endpoint}")
        return endpoint
    if endpoint is None:
        port = free_port()
    else:
        port = urllib.parse.urlsplit(endpoint).port or 4566
        if health(endpoint):
            echo(f"reusing the LocalStack already running at {endpoint}")
            return endpoint
        if not _port_free("127.0.0.1", port):
            raise SystemExit(
                f"gomail up: port {port} (aws.endpoint_url {endpoint}) is taken by something"
                " that is not LocalStack; free it or change aws.endpoint_url"
            )
    echo("starting LocalStack (SQS, SES, S3, SNS)...")
    local = await asyncio.to_thread(LocalStack.launch, port, progress=echo)
    stack.callback(local.stop)
    return local.endpoint_url


def _child_config(settings: Settings, directory: Path) -> tuple[Path, dict[str, str]]:
    """The settings as a YAML file for the children, and their secrets as environment."""
    data = settings.model_dump(mode="json")
    secrets: dict[str, str] = {}
    for entry, instance in zip(data["providers"], settings.providers, strict=True):
        for key in SECRET_KEYS & set(entry):
            entry.pop(key)
            value = getattr(instance, key)
            if value is not None:
                secrets[provider_var(instance.name, key)] = value.get_secret_value()
    for path in SECRET_PATHS:
        node: Any = data
        for part in path[:-1]:
            node = node[part]
        node.pop(path[-1], None)
        original: Any = settings
        for part in path:
            original = getattr(original, part)
        if original is not None:
            secrets[env_var_for(path)] = original.get_secret_value()
    config = directory / "gomailpy-up.yaml"
    config.write_text("# written by `gomail up` for its child processes\n" + yaml.safe_dump(data))
    return config, secrets


async def _verify_ses_senders(settings: Settings) -> None:
    """Verify the local sender domains in the region of every SES instance."""
    regions = {
        instance.region or settings.aws.region for instance in settings.providers.ses_instances()
    }
    async with AsyncExitStack() as stack:
        for region in sorted(regions):
            ses = await open_aws_client(stack, "ses", settings.aws, region=region)
            for domain in VERIFIED_DOMAINS:
                await ses.verify_domain_identity(Domain=domain)


async def _spawn(
    args: list[str], env: dict[str, str], log_path: Path
) -> asyncio.subprocess.Process:
    log = log_path.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gomailpy_cli.main",
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # Ctrl-C reaches us; we stop them in order
        )
    finally:
        log.close()


async def _wait_http(url: str, timeout_s: float = 30.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    return False


async def _stop_children(children: list[asyncio.subprocess.Process], grace_s: float) -> None:
    for child in children:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            await asyncio.wait_for(child.wait(), grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()


async def _ses_counts(endpoint: str | None) -> dict[str, int] | None:
    """What LocalStack's SES sent, by region."""
    if not endpoint:
        return None
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(f"{endpoint}/_aws/ses") as response,
        ):
            messages = (await response.json()).get("messages", [])
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    counts: dict[str, int] = {}
    for message in messages:
        region = str(message.get("Region", ""))
        counts[region] = counts.get(region, 0) + 1
    return counts


async def status_line(running: Running) -> str:
    async with create_queue_client(running.settings) as queues:
        parts = []
        for entry in running.settings.queues.urls:
            try:
                url = await queues.resolve(entry)
                depth = await queues.depth(url)
                dead = (await queues.depth(await queues.dead_letter_url(url))).total
                parts.append(f"{queue_name(url)} {depth.visible}+{depth.in_flight} dlq {dead}")
            except Exception as exc:
                parts.append(f"{queue_name(entry)} ? ({type(exc).__name__})")
    states: dict[str, set[str]] = {}
    for answer in (await node_status(running.admin_urls, timeout_s=1)).values():
        for name, provider in answer.get("providers", {}).items():
            states.setdefault(name, set()).add(provider["state"])
    captured: dict[str, int | None] = {
        name: len(standin.messages) for name, standin in running.standins.items()
    }
    by_region = await _ses_counts(running.endpoint_url)
    for ses in running.settings.providers.ses_instances():
        region = ses.region or running.settings.aws.region
        captured[ses.name] = None if by_region is None else by_region.get(region, 0)
    providers = []
    for name in running.settings.providers.enabled():
        state = "/".join(sorted(states.get(name, {"?"})))
        count = captured.get(name)
        providers.append(f"{name} {state} sent {'?' if count is None else count}")
    return "queues: " + ", ".join(parts) + " | " + " | ".join(providers)


def _every_kind(settings: Settings) -> Settings:
    """Every configured instance enabled, and one instance (named after it) of each kind the
    configuration lacks: `gomail up` always runs SES, SendGrid and SMTP (Mailgun only when
    configured: a Mailgun instance needs its sending domain)."""
    data = settings.model_dump(mode="python")
    present = {entry["kind"] for entry in data["providers"]}
    data["providers"] += [{"name": k, "kind": k} for k in LEGACY_NAMES if k not in present]
    for entry in data["providers"]:
        entry["enabled"] = True
    return Settings.model_validate(data)


def _local_settings(
    settings: Settings,
    endpoint: str | None,
    smtp: dict[str, int],
    sendgrid: dict[str, str],
    mailgun: dict[str, MailgunStandIn] | None = None,
) -> Settings:
    """The instances pointed at their stand-ins (`smtp`: name -> port, `sendgrid`: name -> base
    URL, `mailgun`: name -> stand-in); SES at the endpoint."""
    from pydantic import SecretStr

    data = settings.model_dump(mode="python")
    data["aws"]["endpoint_url"] = endpoint
    for entry in data["providers"]:
        if entry["kind"] == "smtp":
            entry.update(
                host="127.0.0.1",
                port=smtp[entry["name"]],
                use_tls=False,
                start_tls=False,
                username=None,
                password=None,
            )
        elif entry["kind"] == "sendgrid":
            entry.update(base_url=sendgrid[entry["name"]], api_key=SecretStr(STANDIN_API_KEY))
        elif entry["kind"] == "mailgun" and mailgun is not None:
            standin = mailgun[entry["name"]]  # takes the instance's domain, signs with its key
            entry.update(
                base_url=standin.base_url,
                api_key=SecretStr(standin.api_key),
                webhook_signing_key=SecretStr(standin.signing_key),
            )
        elif entry["kind"] == "ses":
            entry["endpoint_url"] = None  # aws.endpoint_url: LocalStack serves every region
    data["pipeline"]["admin_port"] = 0
    # The SMTP bounce listener (`gomail bounces`, a child): where the stand-in mails its DSNs.
    data["events"].update(bounce_host="127.0.0.1", bounce_port=free_port())
    return Settings.model_validate(data)


def _with_events(settings: Settings, sendgrid_keys: dict[str, str]) -> Settings:
    """Events on: SES sends carry the configuration set that publishes to the events queue,
    and each SendGrid stand-in signs its webhook posts with the key the API checks on that
    instance's route (`sendgrid_keys`: name -> public key; the first also on the shared one)."""
    data = settings.model_dump(mode="python")
    first = next(iter(sendgrid_keys.values()))
    data["events"].update(enabled=True, sendgrid_public_key=first)
    for entry in data["providers"]:
        if entry["kind"] == "sendgrid":
            entry["webhook_public_key"] = sendgrid_keys[entry["name"]]
        if entry["kind"] == "ses":  # the same set's name in each instance's region
            entry["configuration_set"] = entry["configuration_set"] or (
                settings.events.ses_configuration_set
            )
    return Settings.model_validate(data)


def _with_operator_page(settings: Settings, node_ports: list[int]) -> Settings:
    """The operator page (/operator) reads the nodes' admin servers, and its controls work
    without an API key: this stack has none, and listens on loopback only."""
    data = settings.model_dump(mode="python")
    urls = [f"http://127.0.0.1:{port}" for port in node_ports]
    data["operator"].update(node_admin_urls=urls, local_controls=True)
    return Settings.model_validate(data)


async def _status_store(
    stack: AsyncExitStack, settings: Settings, endpoint: str | None, workdir: Path, echo: Echo
) -> Settings:
    """Settings whose status store every child process can share."""
    status = settings.status
    data = settings.model_dump(mode="python")
    if status.backend != "dynamodb":
        # A memory store would not be shared by the API and pipeline processes.
        echo(
            "delivery status: off (GET /email/{id} answers 501); set status.backend: dynamodb"
            " to have it (on moto's server, started here, when no endpoint_url is set)"
        )
        data["status"]["backend"] = "none"
        return Settings.model_validate(data)
    if status.endpoint_url or not is_loopback(endpoint):
        echo(f"delivery status: DynamoDB table {status.table} as configured")
        return settings
    # moto's server as a child process of its own (like the API and the nodes), so that it
    # never competes with this process's event loop or writes to its terminal.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "moto.log").open("ab")
    try:
        moto = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    finally:
        log.close()
    stack.push_async_callback(_stop_children, [moto], 5.0)
    if not await _wait_http(url + "/moto-api/"):
        raise SystemExit(f"gomail up: moto's server did not start; see {workdir / 'moto.log'}")
    echo(f"delivery status: DynamoDB on moto's server at {url}")
    data["status"].update(backend="dynamodb", endpoint_url=url)
    return Settings.model_validate(data)


def _point_webhooks(
    api_url: str, sendgrids: dict[str, SendGridStandIn], mailguns: dict[str, MailgunStandIn]
) -> None:
    """Each SendGrid and Mailgun stand-in posts its events to its instance's route."""
    for name, sendgrid in sendgrids.items():
        sendgrid.events_url = f"{api_url}/events/sendgrid/{name}"
    for name, mailgun in mailguns.items():
        mailgun.events_url = f"{api_url}/events/mailgun/{name}"


async def _start_mailgun_standins(
    stack: AsyncExitStack, settings: Settings
) -> dict[str, MailgunStandIn]:
    """One Mailgun stand-in per Mailgun instance, for its domain, each on a port of its own."""
    mailguns: dict[str, MailgunStandIn] = {}
    for instance in settings.providers.mailgun_instances():
        standin = MailgunStandIn(
            api_key=STANDIN_API_KEY, domain=instance.domain, signing_key=token_hex(16)
        )
        await standin.start()
        stack.push_async_callback(standin.stop)
        mailguns[instance.name] = standin
    return mailguns


async def _start_standins(
    stack: AsyncExitStack,
    settings: Settings,
    mailguns: dict[str, MailgunStandIn] | None = None,
) -> tuple[dict[str, SmtpStandIn], dict[str, SendGridStandIn]]:
    """One stand-in per SMTP and SendGrid instance, each on a port of its own. The first
    SendGrid stand-in serves the control API of all: `/_standin/<smtp instance>`,
    `/_standin/sendgrid/<other sendgrid instance>`, `/_standin/mailgun/<mailgun instance>`
    (`mailguns`, started already)."""
    smtps: dict[str, SmtpStandIn] = {}
    for smtp_instance in settings.providers.smtp_instances():
        smtps[smtp_instance.name] = SmtpStandIn()
        await smtps[smtp_instance.name].start()
        stack.push_async_callback(smtps[smtp_instance.name].stop)
    names = [instance.name for instance in settings.providers.sendgrid_instances()]
    sendgrids = {name: SendGridStandIn(api_key=STANDIN_API_KEY) for name in names[1:]}
    controls: dict[str, Controllable] = {
        **smtps,
        **{f"sendgrid/{name}": standin for name, standin in sendgrids.items()},
        **{f"mailgun/{name}": standin for name, standin in (mailguns or {}).items()},
    }
    sendgrids = {
        names[0]: SendGridStandIn(api_key=STANDIN_API_KEY, controls=controls),
        **sendgrids,
    }
    for standin in sendgrids.values():
        await standin.start()
        stack.push_async_callback(standin.stop)
    return smtps, sendgrids


async def run_up(settings: Settings, options: UpOptions, echo: Echo = print) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with AsyncExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="gomailpy-up-"))
        endpoint = await _start_localstack(stack, settings, echo)
        if stop.is_set():
            return
        env = dict(os.environ)
        if is_loopback(endpoint):
            # The emulator takes any credentials; never send a real key to it.
            env.update(AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local")
            os.environ.update(AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local")
        settings = _every_kind(settings)
        mailguns = await _start_mailgun_standins(stack, settings)
        smtps, sendgrids = await _start_standins(stack, settings, mailguns)
        smtp, sendgrid = next(iter(smtps.values())), next(iter(sendgrids.values()))
        settings = _local_settings(
            settings,
            endpoint,
            {name: s.port for name, s in smtps.items()},
            {name: s.base_url for name, s in sendgrids.items()},
            mailguns,
        )
        settings = _with_events(settings, {n: s.public_key for n, s in sendgrids.items()})
        receiver = await stack.enter_async_context(WebhookReceiver())  # webhooks land here
        settings = with_local_receiver(settings, receiver)
        settings = await _status_store(stack, settings, endpoint, workdir, echo)

        async with create_queue_client(settings) as queues:
            for entry in settings.queues.urls:
                await queues.ensure_queue(entry)
        await ensure_resources(settings)  # status table, claim-check bucket
        if is_loopback(endpoint):
            await _verify_ses_senders(settings)

        api_port = settings.api.port if options.api_port is None else options.api_port
        api_port = api_port or free_port()
        _point_webhooks(f"http://127.0.0.1:{api_port}", sendgrids, mailguns)
        for smtp_standin in smtps.values():
            smtp_standin.report_to = (settings.events.bounce_host, settings.events.bounce_port)
        node_ports = [free_port() for _ in range(options.nodes)]
        settings = _with_operator_page(settings, node_ports)
        config, secrets = _child_config(settings, workdir)
        child_env = {**env, **secrets}
        running = Running(
            settings=settings,
            api_url=f"http://127.0.0.1:{api_port}",
            admin_urls=[],
            standin_url=sendgrid.base_url,
            endpoint_url=endpoint,
            smtp=smtp,
            sendgrid=sendgrid,
            standins={**smtps, **sendgrids, **mailguns},
        )
        stack.push_async_callback(
            _stop_children, running.children, settings.pipeline.shutdown_grace_s + 5
        )
        running.children.append(
            await _spawn(
                ["api", "--config", str(config)],
                {**child_env, "GOMAILPY_API__PORT": str(api_port)},
                workdir / "api.log",
            )
        )
        running.children.append(
            await _spawn(["bounces", "--config", str(config)], child_env, workdir / "bounces.log")
        )
        cert, key = self_signed_certificate(workdir)  # STARTTLS of SMTP submission
        running.submission_port = free_port()
        submission = ["smtp", "--config", str(config), "--port", str(running.submission_port)]
        submission += ["--tls-cert", str(cert), "--tls-key", str(key)]
        running.children.append(await _spawn(submission, child_env, workdir / "smtp.log"))
        for number, port in enumerate(node_ports):
            running.admin_urls.append(f"http://127.0.0.1:{port}")
            running.children.append(
                await _spawn(
                    ["pipeline", "--config", str(config)],
                    {**child_env, "GOMAILPY_PIPELINE__ADMIN_PORT": str(port)},
                    workdir / f"pipeline-{number + 1}.log",
                )
            )
        if not await _wait_http(running.api_url + "/healthz"):
            raise SystemExit(f"gomail up: the API did not start; see {workdir / 'api.log'}")
        for url in running.admin_urls:
            await _wait_http(url + "/healthz")

        echo(_banner(running, workdir, options))
        if options.state_file is not None:
            _publish(stack, options.state_file, running)
        if options.open_browser:
            import webbrowser

            webbrowser.open(running.api_url + "/")
        await _report_until(stop, running, options, echo)
        echo("\nstopping: pipeline nodes and API finish what they are doing...")
    echo("stopped; nothing left running.")


def _publish(stack: AsyncExitStack, path: Path, running: Running) -> None:
    """Write the state file `gomail status`, `dlq` and `send` find this stack by; removed first
    thing on the way out (before the children stop)."""
    status = running.settings.status
    state = UpState(
        pid=os.getpid(),
        endpoint_url=running.endpoint_url,
        queues=list(running.settings.queues.urls),
        api_url=running.api_url,
        admin_urls=list(running.admin_urls),
        status_endpoint_url=status.endpoint_url if status.enabled else None,
    )
    write_state(path, state)
    stack.callback(remove_state, path, state.pid)


async def _report_until(
    stop: asyncio.Event, running: Running, options: UpOptions, echo: Echo
) -> None:
    tty = sys.stdout.isatty()
    started = asyncio.get_running_loop().time()
    ticks = 0
    while not stop.is_set():
        if options.run_for_s is not None and (
            asyncio.get_running_loop().time() - started >= options.run_for_s
        ):
            break
        for child in running.children:
            if child.returncode is not None:
                echo(f"\na child process exited with code {child.returncode}; stopping")
                return
        line = await status_line(running)
        if tty:
            sys.stdout.write("\r\x1b[2K" + line)
            sys.stdout.flush()
        elif ticks % 5 == 0:
            echo(line)
        ticks += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), options.status_interval_s)


def _standin_lines(running: Running, control: str) -> list[str]:
    """Where each stand-in's captured mail is: the first SMTP and SendGrid instance's on the
    first line, any other instance's on one line each."""
    smtp = [n for n, s in running.standins.items() if isinstance(s, SmtpStandIn)]
    sendgrid = [n for n, s in running.standins.items() if isinstance(s, SendGridStandIn)]
    lines = [f"  captured mail   SMTP: {control}/{smtp[0]}/messages   SendGrid: {control}/messages"]
    lines += [f"                  SMTP {name}: {control}/{name}/messages" for name in smtp[1:]]
    lines += [
        f"                  SendGrid {name}: {control}/sendgrid/{name}/messages"
        for name in sendgrid[1:]
    ]
    mailgun = [n for n, s in running.standins.items() if isinstance(s, MailgunStandIn)]
    lines += [
        f"                  Mailgun {name}: {control}/mailgun/{name}/messages" for name in mailgun
    ]
    return lines


def _banner(running: Running, workdir: Path, options: UpOptions) -> str:
    control = running.standin_url + "/_standin"
    first_smtp = next(n for n, s in running.standins.items() if isinstance(s, SmtpStandIn))
    lines = [
        "",
        "gomailpy is up.",
        f"  web form        {running.api_url}/",
        f"  operator page   {running.api_url}/operator   (queues, providers, controls)",
        f"  API             {running.api_url}/email/send   (sendAt, templateId: README)",
        f"  SendGrid v3 API {running.api_url}/v3/mail/send   (SendGridAPIClient(key, host=...))",
        f"  templates       {running.api_url}/templates/<id>   (gomail templates put|get|list)",
        f"  SMTP submission 127.0.0.1:{running.submission_port}   (STARTTLS; AUTH user apikey,"
        " password an API key)",
        f"  delivery status {running.api_url}/email/<messageId>"
        + ("" if running.settings.status.enabled else "   (off: see above)"),
        f"  suppressions    {running.api_url}/suppressions   (GET, PUT/DELETE .../<address>)",
        *banner_lines(running.settings),  # the local webhook receiver's page
        f"  OpenAPI         {running.api_url}/openapi.json",
        f"  API metrics     {running.api_url}/metrics",
    ]
    for i, url in enumerate(running.admin_urls, 1):
        lines.append(f"  pipeline {i}      {url}/metrics  {url}/status")
    lines += [
        f"  SQS/SES/S3      {running.endpoint_url or 'AWS'}"
        f"   (mail sent through SES: {running.endpoint_url}/_aws/ses)",
        *_standin_lines(running, control),
        f"  SMTP bounces    {running.settings.events.bounce_host}:"
        f"{running.settings.events.bounce_port}   (gomail bounces: the stand-in's DSNs go here)",
        f"  logs            {workdir}",
        "",
        "Try it:",
        f"  gomail send --api {running.api_url} --count 100",
        "Make a provider fail, hang or recover, and watch the traffic move:",
        f'  curl -X POST {control}/{first_smtp}/mode -d \'{{"mode": "fail"}}\'      # or hang, ok',
        f'  curl -X POST {control}/mode -d \'{{"mode": "hang"}}\'           # SendGrid',
        "Make an address bounce or complain (SendGrid and SMTP report it; SES on LocalStack",
        "only reports sent and delivered): the recipient's local part decides",
        "  bounce@example.org, bounce+1@...   hard bounce: the address is suppressed",
        "  complain@example.org               delivered, then a spam complaint: suppressed",
        "  defer@example.org                  deferred (the server says: try later)",
        "  reject@example.org                 SMTP only: refused at RCPT time, a hard bounce",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)
