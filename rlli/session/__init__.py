"""The app's session layer: admission (prompt checks, rate limit, the round batcher), who rates a delivery
(:func:`rlli.session.raters.raters_for`), the agents' background jobs, and the studio that ties them to the
round function (:func:`rlli.service.run_round`) and the store."""
