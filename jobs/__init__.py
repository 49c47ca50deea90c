"""Job kinds as specs (typed parameters, their queue, their checks and choices) and the way work is sent.

Light on purpose: the UI and the command line import it. No Celery at import time (the sending client is
made when something is sent), no model library, no worker handler.
"""
