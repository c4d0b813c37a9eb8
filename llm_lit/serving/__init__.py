"""The OpenAI-compatible HTTP server behind `llm_lit serve`: a FastAPI app on uvicorn in front of the
batched generation engine (`llm_lit.generation.batch_engine`).

`app.build_app` makes the app (routes, errors, API key, access log, metrics); `server.run_server`
runs it until SIGTERM or Ctrl-C, draining within a bound. Needs the `serve` extra
(`pip install 'llm_lit[serve]'`); nothing else in llm_lit imports this package but `commands.serve`.

May import: `run` and everything below it. Never `commands`.
"""
