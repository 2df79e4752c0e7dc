from rest_framework.renderers import BaseRenderer


class CSVRenderer(BaseRenderer):
    """Lets `?format=csv` through content negotiation; the view streams the CSV itself."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        # Only errors reach here (the export itself is a StreamingHttpResponse): keep them readable.
        if isinstance(data, dict):
            return "\n".join(f"{key},{value}" for key, value in data.items()).encode()
        return b"" if data is None else str(data).encode()
