"""HTTP notification services. Each class says which settings it takes and how one message
becomes one request; errors and retries are the base class's business."""

from __future__ import annotations

from alerts.transports.base import Message, Transport, TransportError

_PRIORITY = {"info": -1, "warning": 0, "error": 1, "critical": 1}


class Pushover(Transport):
    kind = "pushover"
    required_fields = ("user_key", "app_token")
    optional_fields = ("device", "sound")
    secret_fields = ("user_key", "app_token")
    base_url_setting = "DOCKMON_PUSHOVER_URL"

    def send(self, message: Message) -> None:
        data = {
            "token": self.config["app_token"], "user": self.config["user_key"], "title": message.title[:250],
            "message": message.body[:1024] or message.title, "priority": 0 if message.event == "resolved" else _PRIORITY.get(message.severity, 0),
        }
        if message.link:
            data["url"] = message.link
        for name in ("device", "sound"):
            if self.config.get(name):
                data[name] = self.config[name]
        try:
            self.post(self.url("1/messages.json"), data=data)
        except TransportError as exc:
            # Pushover answers 400 with "token is invalid" / "user key is invalid" for bad keys.
            if exc.status_code == 400 and "invalid" in str(exc):
                raise TransportError(str(exc), permanent=True, status_code=400) from exc
            raise


class Telegram(Transport):
    kind = "telegram"
    required_fields = ("bot_token", "chat_id")
    optional_fields = ("thread_id",)
    secret_fields = ("bot_token",)
    base_url_setting = "DOCKMON_TELEGRAM_URL"

    def send(self, message: Message) -> None:
        text = f"{message.title}\n\n{message.body}".strip()
        if message.link:
            text += f"\n{message.link}"
        body = {"chat_id": self.config["chat_id"], "text": text[:4096], "disable_web_page_preview": True}
        if self.config.get("thread_id"):
            body["message_thread_id"] = self.config["thread_id"]
        try:
            self.post(self.url(f"bot{self.config['bot_token']}/sendMessage"), json=body)
        except TransportError as exc:
            # "chat not found" is a 400: the chat id is wrong, and stays wrong.
            if exc.status_code == 400 and "chat not found" in str(exc).lower():
                raise TransportError(str(exc), permanent=True, status_code=400) from exc
            raise


class Discord(Transport):
    kind = "discord"
    required_fields = ("webhook_url",)
    optional_fields = ("username",)
    secret_fields = ("webhook_url",)
    url_fields = ("webhook_url",)
    base_url_setting = "DOCKMON_DISCORD_URL"

    def send(self, message: Message) -> None:
        embed = {"title": message.title[:256], "description": message.body[:4000], "color": message.color}
        if message.link:
            embed["url"] = message.link
        body = {"embeds": [embed], "allowed_mentions": {"parse": []}}
        if self.config.get("username"):
            body["username"] = self.config["username"]
        self.post(self.url(self.config["webhook_url"]), json=body)


class Slack(Transport):
    kind = "slack"
    required_fields = ("webhook_url",)
    optional_fields = ("channel",)
    secret_fields = ("webhook_url",)
    url_fields = ("webhook_url",)
    base_url_setting = "DOCKMON_SLACK_URL"

    def send(self, message: Message) -> None:
        text = f"*{message.title}*\n{message.body}" + (f"\n<{message.link}|Open in DockMon>" if message.link else "")
        body = {"text": text, "attachments": [{"color": f"#{message.color:06x}", "text": message.body[:3000]}]}
        if self.config.get("channel"):
            body["channel"] = self.config["channel"]
        self.post(self.url(self.config["webhook_url"]), json=body)


class Teams(Transport):
    kind = "teams"
    required_fields = ("webhook_url",)
    secret_fields = ("webhook_url",)
    url_fields = ("webhook_url",)
    base_url_setting = "DOCKMON_TEAMS_URL"

    def send(self, message: Message) -> None:
        body = {
            "@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": message.title[:200],
            "themeColor": f"{message.color:06x}", "title": message.title, "text": message.body,
        }
        if message.link:
            body["potentialAction"] = [{"@type": "OpenUri", "name": "Open in DockMon", "targets": [{"os": "default", "uri": message.link}]}]
        self.post(self.url(self.config["webhook_url"]), json=body)


class GoogleChat(Transport):
    kind = "googlechat"
    required_fields = ("webhook_url",)
    secret_fields = ("webhook_url",)
    url_fields = ("webhook_url",)
    base_url_setting = "DOCKMON_GOOGLECHAT_URL"

    def send(self, message: Message) -> None:
        text = f"*{message.title}*\n{message.body}" + (f"\n{message.link}" if message.link else "")
        self.post(self.url(self.config["webhook_url"]), json={"text": text})


class Gotify(Transport):
    kind = "gotify"
    required_fields = ("app_token",)
    optional_fields = ("priority",)
    secret_fields = ("app_token",)
    base_url_setting = "DOCKMON_GOTIFY_URL"

    def send(self, message: Message) -> None:
        priority = self.config.get("priority")
        if priority in (None, ""):
            priority = {"info": 2, "warning": 5, "error": 8, "critical": 10}.get(message.severity, 5)
        body = {"title": message.title, "message": message.body, "priority": int(priority)}
        if message.link:
            body["extras"] = {"client::notification": {"click": {"url": message.link}}}
        self.post(self.url("message"), json=body, headers={"X-Gotify-Key": self.config["app_token"]})


class Ntfy(Transport):
    kind = "ntfy"
    required_fields = ("topic",)
    optional_fields = ("access_token", "username", "password")
    secret_fields = ("access_token", "password")
    base_url_setting = "DOCKMON_NTFY_URL"
    url_fields = ("topic",)  # a topic may be a full URL (then it names the server too)

    @classmethod
    def destination(cls, config: dict) -> dict:
        where = super().destination(config)
        topic = str(config.get("topic") or "")
        if topic.lower().startswith(("http://", "https://")):
            where["topic"] = topic
        return where

    def send(self, message: Message) -> None:
        priority = {"info": "low", "warning": "default", "error": "high", "critical": "urgent"}.get(message.severity, "default")
        headers = {
            # Header values must be latin-1; titles with other characters lose them, not the message.
            "Title": message.title.encode("latin-1", "replace").decode("latin-1"),
            "Priority": "default" if message.event == "resolved" else priority,
            "Tags": "white_check_mark" if message.event == "resolved" else "warning",
        }
        if message.link:
            headers["Click"] = message.link
        if self.config.get("access_token"):
            headers["Authorization"] = f"Bearer {self.config['access_token']}"
        elif self.config.get("username"):
            import base64

            pair = f"{self.config['username']}:{self.config.get('password', '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self.post(self.url(self.config["topic"]), data=(message.body or message.title).encode(), headers=headers)


class Webhook(Transport):
    """A JSON POST of the whole alert to any URL, with custom headers (values kept secret)."""

    kind = "webhook"
    required_fields = ("url",)
    optional_fields = ("headers",)
    secret_fields = ("url", "headers")
    # The header values go wherever the URL points.
    destination_fields = ("url", "base_url")
    url_fields = ("url",)

    @classmethod
    def validate(cls, config: dict) -> dict:
        errors = super().validate(config)
        url = config.get("url") or ""
        if url and not str(url).startswith(("http://", "https://")):
            errors["url"] = "Use an http:// or https:// URL."
        headers = config.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            errors["headers"] = "Give headers as an object of names to string values."
        elif any(not k or any(c in k for c in " :\r\n") or "\n" in v or "\r" in v for k, v in headers.items()):
            errors["headers"] = "Header names and values must not hold spaces, colons or line breaks."
        return errors

    @property
    def base_url(self) -> str:
        return self.config.get("base_url") or ""

    def send(self, message: Message) -> None:
        body = {
            "event": message.event, "title": message.title, "message": message.body, "severity": message.severity,
            "link": message.link, "alert": message.alert,
        }
        headers = {"Content-Type": "application/json", "User-Agent": "DockMon"}
        headers.update(self.config.get("headers") or {})
        url = self.config["url"]
        if self.config.get("base_url"):
            url = self.url(url)
        self.post(url, json=body, headers=headers)
