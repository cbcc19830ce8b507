# The two commands of the README. Each installs whatever is missing first.
ARGS ?=
export GRADIO_ANALYTICS_ENABLED = False
export HF_HUB_DISABLE_TELEMETRY = 1

.PHONY: app test setup

app:
	bash scripts/setup.sh app
	.venv/bin/livelearner app $(ARGS)

test:
	bash scripts/setup.sh test
	.venv/bin/python -m pytest -ra $(ARGS)
