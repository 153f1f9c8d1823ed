"""Glue between the simulated environments in ``envs/`` and the rest of the toolkit."""
from .collection import CollectSummary, EpisodeRecord, collect, make_env, make_policy, record_episode

__all__ = ["CollectSummary", "EpisodeRecord", "collect", "make_env", "make_policy", "record_episode"]
