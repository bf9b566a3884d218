"""GET /ask (and / → /ask): the Ask page, an HTML shell without data, so it needs no key; and the key's
conversations, which the page (and any client) asks /api/v1/answer and /api/v1/search in. The page also
reads GET /api/v1/collections (the collections the key may use) and posts to /api/v1/feedback."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from apps.api.ask import page as ask_page
from apps.api.deps import ReadKey, RuntimeDep
from apps.orchestration.src.conversations import UnknownConversationError

router = APIRouter(tags=["ask"])
api_router = APIRouter(tags=["conversations"])
ConversationPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


@router.get("/", include_in_schema=False)
async def home() -> RedirectResponse:
    return RedirectResponse("/ask", status_code=307)


@router.get("/ask", response_class=HTMLResponse, include_in_schema=False)
async def ask() -> HTMLResponse:
    # The page security headers (CSP, X-Frame-Options) come from apps.api.middleware.PageSecurity.
    return HTMLResponse(ask_page.page(), headers={"Cache-Control": "no-cache"})


@router.get("/ask/static/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    if name not in ask_page.ASSETS:
        raise HTTPException(404, f"no Ask page asset {name!r}")
    return FileResponse(ask_page.STATIC / name, media_type=ask_page.ASSETS[name])


@api_router.post("/conversations", status_code=201, summary="Start a conversation: pass its id as "
                                                             "`conversation_id` to /answer and /search")
async def create_conversation(runtime: RuntimeDep, key: ReadKey) -> dict[str, Any]:
    return await runtime.conversations.create(key.id)


@api_router.get("/conversations", summary="This key's conversations, the most recently used first")
async def list_conversations(runtime: RuntimeDep, key: ReadKey,
                             limit: Annotated[int, Query(ge=1, le=200)] = 20) -> list[dict[str, Any]]:
    return await runtime.conversations.recent(key.id, limit)


@api_router.get("/conversations/{conversation_id}", summary="A conversation's turns (question, standalone "
                                                            "rewrite, answer, sources, this key's feedback)")
async def get_conversation(conversation_id: ConversationPath, runtime: RuntimeDep, key: ReadKey) -> dict[str, Any]:
    try:
        return await runtime.conversations.get(key.id, conversation_id)
    except UnknownConversationError as exc:
        raise HTTPException(404, str(exc)) from None


@api_router.delete("/conversations/{conversation_id}", status_code=204, summary="Delete a conversation and its turns")
async def delete_conversation(conversation_id: ConversationPath, runtime: RuntimeDep, key: ReadKey) -> Response:
    try:
        await runtime.conversations.delete(key.id, conversation_id)
    except UnknownConversationError as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(status_code=204)
