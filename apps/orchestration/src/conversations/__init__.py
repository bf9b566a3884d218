"""Conversations: follow-ups rewritten into standalone questions, turns stored per API key, feedback rows."""

from apps.orchestration.src.conversations.feedback import FeedbackStore
from apps.orchestration.src.conversations.rewrite import FollowupRewriter, turn_subject
from apps.orchestration.src.conversations.store import ConversationStore, NewTurn, UnknownConversationError
from apps.orchestration.src.conversations.types import FollowupRewrite, HistoryTurn

__all__ = ["ConversationStore", "FeedbackStore", "FollowupRewrite", "FollowupRewriter", "HistoryTurn", "NewTurn",
           "UnknownConversationError", "turn_subject"]
