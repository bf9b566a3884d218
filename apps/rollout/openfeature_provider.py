"""The same flags through the standard OpenFeature API:

    from openfeature import api
    api.set_provider(DtRagProvider(flag_service))
    api.get_client().get_boolean_value("new_pipeline", False, EvaluationContext("user-1"))

The targeting key is the user id; attributes `job_id` and `request_id` are honoured like in the API.
Only boolean flags exist here: other types resolve to the caller's default with TYPE_MISMATCH.
"""

from __future__ import annotations

from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from apps.rollout.flags import FlagContext, FlagService, UnknownFlagError

_REASONS = {"kill": Reason.DISABLED, "disabled": Reason.DISABLED, "allowlist": Reason.TARGETING_MATCH,
            "rollout": Reason.SPLIT, "full": Reason.STATIC}


class DtRagProvider(AbstractProvider):
    def __init__(self, flags: FlagService) -> None:
        self._flags = flags

    def get_metadata(self) -> Metadata:
        return Metadata(name="dt-rag")

    def get_provider_hooks(self) -> list[Any]:
        return []

    def resolve_boolean_details(self, flag_key: str, default_value: bool,
                                evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[bool]:
        attributes = evaluation_context.attributes if evaluation_context else {}
        context = FlagContext(
            user_id=evaluation_context.targeting_key if evaluation_context else None,
            job_id=attributes.get("job_id"), request_id=attributes.get("request_id"),  # type: ignore[arg-type]
        )
        try:
            result = self._flags.evaluate(flag_key, context)
        except UnknownFlagError as exc:
            return FlagResolutionDetails(default_value, error_code=ErrorCode.FLAG_NOT_FOUND,
                                         error_message=str(exc.args[0]), reason=Reason.ERROR)
        return FlagResolutionDetails(result.enabled, reason=_REASONS[result.reason],
                                     variant="on" if result.enabled else "off",
                                     flag_metadata={"bucket": result.bucket} if result.bucket else {})

    def _mismatch(self, default_value: Any) -> FlagResolutionDetails[Any]:
        return FlagResolutionDetails(default_value, error_code=ErrorCode.TYPE_MISMATCH,
                                     error_message="DT-RAG flags are boolean", reason=Reason.ERROR)

    def resolve_string_details(self, flag_key: str, default_value: str,
                               evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[str]:
        return self._mismatch(default_value)

    def resolve_integer_details(self, flag_key: str, default_value: int,
                                evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[int]:
        return self._mismatch(default_value)

    def resolve_float_details(self, flag_key: str, default_value: float,
                              evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[float]:
        return self._mismatch(default_value)

    def resolve_object_details(self, flag_key: str, default_value: Any,
                               evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[Any]:
        return self._mismatch(default_value)
