"""The event loop `monoduty api` and `monoduty worker` run on (bench/ runs its baselines on the same)."""

NAME = "asyncio"
