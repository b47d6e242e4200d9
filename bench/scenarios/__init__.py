"""One module per row of the table; each exposes `async def run(ctx: Context) -> None`."""
