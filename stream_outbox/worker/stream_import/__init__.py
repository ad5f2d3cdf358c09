"""Going live through Stream's Import API: the history up to a watermark as import files."""

__all__: list[str] = []
