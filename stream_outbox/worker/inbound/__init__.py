"""The inbound side: what users do in Stream comes home to the app's database."""

__all__: list[str] = []
