// The Ask page: a question box, the answer streamed from POST /api/v1/answer (Server-Sent Events) with its
// numbered citations, follow-ups in a conversation, thumbs and comments sent to POST /api/v1/feedback.
// No libraries and nothing from the network: the page's Content-Security-Policy allows only this origin.
// The API key lives in sessionStorage and goes out only as the X-API-Key header, never in a URL.
"use strict";

const KEY = "dtrag-ask-key";
const CONVERSATION = "dtrag-ask-conversation";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

const TEXT = {
  en: {
    ask: "Ask", skip: "Skip to the question", collection: "Collection", allCollections: "All collections", newConversation: "New conversation",
    signOut: "Sign out", signIn: "Sign in", signInButton: "Sign in", apiKey: "API key",
    keyHelp: "Your API key (a read key is enough). It stays in this browser tab only and is sent as the " +
      "X-API-Key header, never in a URL.",
    conversation: "Conversation", question: "Question", askButton: "Ask",
    askHint: "Enter sends, Shift+Enter starts a new line.",
    empty: "Ask a question about the documents. Follow-up questions may refer to the previous answer.",
    openSource: "Open the source", close: "Close", youAsked: "You asked", answer: "Answer", sources: "Sources",
    noSources: "No passage answered this question.",
    answering: "Answering…", answered: "The answer is ready.", refused: (m) => `Refused: ${m}`,
    failed: (m) => `The question failed: ${m}`,
    answeredAs: (q) => `Answered as: ${q}`, rewritten: "follow-up, answered as a standalone question",
    cite: (n, title) => `Source ${n}: ${title}`, sourceNumber: (n) => `Source ${n}`,
    rateAnswer: "Rate this answer", helpful: "Helpful", notHelpful: "Not helpful",
    relevant: (n) => `Source ${n} is relevant`, irrelevant: (n) => `Source ${n} is not relevant`,
    comment: "Comment (optional)", addComment: "Add a comment", sendComment: "Send comment",
    thanks: "Thank you: recorded.", reward: (r) => `Thank you: recorded (reward ${r}).`,
    plan: (n) => `Answered in ${n} parts`, partHits: "sources",
    debate: (pct, rounds) => `Agents debated: ${pct} % agreement after ${rounds} round${rounds === 1 ? "" : "s"}`,
    conflict: "The sources conflict; each side with its citations:", agreed: "The agents agreed.",
    agent: (n, role) => `Agent ${n} (${role})`, degraded: (nodes) => `Skipped or degraded: ${nodes}`,
    expired: "That conversation is gone; a new one was started.", round: (n) => `Debate round ${n}…`,
  },
  ko: {
    ask: "질문", skip: "질문 입력으로 건너뛰기", collection: "컬렉션", allCollections: "모든 컬렉션", newConversation: "새 대화", signOut: "로그아웃",
    signIn: "로그인", signInButton: "로그인", apiKey: "API 키",
    keyHelp: "API 키를 입력하세요(읽기 키면 충분합니다). 이 브라우저 탭에만 보관되고 URL이 아닌 X-API-Key 헤더로만 " +
      "전송됩니다.",
    conversation: "대화", question: "질문", askButton: "질문하기", askHint: "Enter로 보내고 Shift+Enter로 줄을 바꿉니다.",
    empty: "문서에 대해 질문하세요. 이어지는 질문은 앞의 답을 가리킬 수 있습니다.",
    openSource: "원문 열기", close: "닫기", youAsked: "질문", answer: "답변", sources: "출처",
    noSources: "이 질문에 답하는 구절이 없습니다.",
    answering: "답변을 만드는 중…", answered: "답변이 준비되었습니다.", refused: (m) => `거부됨: ${m}`,
    failed: (m) => `질문에 실패했습니다: ${m}`,
    answeredAs: (q) => `다음 질문으로 답함: ${q}`, rewritten: "이어지는 질문을 독립된 질문으로 바꾸어 답함",
    cite: (n, title) => `출처 ${n}: ${title}`, sourceNumber: (n) => `출처 ${n}`,
    rateAnswer: "이 답변 평가", helpful: "도움이 됨", notHelpful: "도움이 안 됨",
    relevant: (n) => `출처 ${n}: 관련 있음`, irrelevant: (n) => `출처 ${n}: 관련 없음`,
    comment: "의견(선택)", addComment: "의견 남기기", sendComment: "의견 보내기",
    thanks: "감사합니다. 기록되었습니다.", reward: (r) => `감사합니다. 기록되었습니다(보상 ${r}).`,
    plan: (n) => `${n}개 부분으로 나누어 답함`, partHits: "출처",
    debate: (pct, rounds) => `에이전트 토론: ${rounds}라운드 후 합의도 ${pct} %`,
    conflict: "출처들이 서로 다릅니다. 각 주장과 그 출처:", agreed: "에이전트들이 합의했습니다.",
    agent: (n, role) => `에이전트 ${n} (${role})`, degraded: (nodes) => `생략되거나 약화된 단계: ${nodes}`,
    expired: "이전 대화가 없어져 새 대화를 시작했습니다.", round: (n) => `토론 ${n}라운드…`,
  },
};
const LANG = (navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"])
  .map((l) => String(l).slice(0, 2).toLowerCase()).find((l) => l in TEXT) || "en";

function t(key, ...args) {
  const value = TEXT[LANG][key] ?? TEXT.en[key];
  return typeof value === "function" ? value(...args) : value;
}

class Refused extends Error {}
class Missing extends Error {}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c != null) el.append(c instanceof Node ? c : String(c));
  return el;
}

function thumb(down) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.classList.add("icon");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", "M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 6.6 7.6" +
    "C6.2 8 6 8.5 6 9v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1c.1-.2.2-.5.2-.7v-2z");
  svg.append(path);
  if (down) svg.classList.add("down");
  return svg;
}

function translate() {
  document.documentElement.lang = LANG;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  document.title = `DT-RAG · ${t("ask")}`;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options, headers: {"Content-Type": "application/json", "X-API-Key": sessionStorage.getItem(KEY) || ""},
  });
  if (response.status === 204) return null;
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 || response.status === 403) throw new Refused(body.detail || response.statusText);
  if (response.status === 404) throw new Missing(body.detail || response.statusText);
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

// --- collections ----------------------------------------------------------------------------------------

// The one place a picked collection becomes request fields: none for every collection the key may use.
function collectionFields(name) {
  return name ? {collections: [name]} : {};
}

// GET /api/v1/collections lists only what the key may use; a single one needs no choice.
async function loadCollections() {
  const list = await api("/api/v1/collections");
  const select = $("collection");
  const chosen = select.value;
  const options = list.map((c) => h("option", {value: c.name, title: c.description || ""}, c.name));
  select.replaceChildren(...(list.length > 1 ? [h("option", {value: ""}, t("allCollections")), ...options] : options));
  if (list.some((c) => c.name === chosen)) select.value = chosen;
}

// --- answers --------------------------------------------------------------------------------------------

function safeUrl(value) {
  if (!value) return null;
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

let returnFocus = null;

function openPassage(source, n, opener) {
  $("passage-title").textContent = source.title || t("sourceNumber", n);
  $("passage-number").textContent = t("sourceNumber", n);
  $("passage-snippet").textContent = source.snippet || "";
  const url = safeUrl(source.source_url);
  $("passage-link-row").hidden = !url;
  if (url) $("passage-link").href = url;
  else $("passage-link").removeAttribute("href");
  returnFocus = opener;
  $("passage").showModal();
  $("passage-close").focus();
}

function citeButton(turn, n) {
  const source = turn.sources[n - 1];
  const button = h("button", {type: "button", class: "cite", "data-n": n, "aria-label": t("cite", n, source.title)},
                   `[${n}]`);
  button.addEventListener("click", () => openPassage(source, n, button));
  return button;
}

// The answer's text with each "[n]" that names a source as a button opening it.
function answerNodes(turn, text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(/\[(\d+)\]/g)) {
    const n = Number(match[1]);
    if (n < 1 || n > turn.sources.length) continue;
    if (match.index > last) nodes.push(text.slice(last, match.index));
    nodes.push(citeButton(turn, n));
    last = match.index + match[0].length;
  }
  if (last < text.length) nodes.push(text.slice(last));
  return nodes;
}

function citesOf(turn, chunkIds) {
  const nodes = [];
  for (const id of chunkIds || []) {
    const n = turn.numbers.get(id);
    if (n) nodes.push(" ", citeButton(turn, n));
  }
  return nodes;
}

function renderPlan(turn, plan) {
  if (!plan || !plan.parts || plan.parts.length < 2) return null;
  return h("details", {class: "plan"}, h("summary", {}, t("plan", plan.parts.length)),
    h("ol", {}, ...plan.parts.map((p) => h("li", {}, p.text, ...citesOf(turn, p.hits)))));
}

function renderDebate(turn, debate) {
  if (!debate) return null;
  const pct = Math.round(100 * (debate.agreement ?? 0));
  const body = [];
  const lastRound = (debate.agents || []).at(-1) || [];
  if (debate.conflict) {
    body.push(h("p", {class: "conflict"}, t("conflict")));
    body.push(h("ul", {}, ...lastRound.filter((a) => a.answer && !a.abstained).map((a) =>
      h("li", {}, h("span", {class: "muted"}, `${t("agent", a.agent + 1, a.role)}: `), a.answer,
        ...citesOf(turn, a.cited_chunk_ids)))));
  } else {
    body.push(h("p", {}, t("agreed")));
  }
  return h("details", {class: "debate", "data-conflict": String(Boolean(debate.conflict))},
    h("summary", {}, t("debate", pct, debate.rounds)), ...body);
}

async function sendFeedback(turn, fields) {
  const status = turn.el.querySelector(".feedback-status");
  status.textContent = "";
  try {
    const out = await api("/api/v1/feedback", {method: "POST", body: JSON.stringify({request_id: turn.requestId, ...fields})});
    status.textContent = out.reward != null && out.accepted ? t("reward", out.reward.toFixed(2)) : t("thanks");
    status.className = "feedback-status small good";
  } catch (error) {
    if (error instanceof Refused) return refuse(error.message);
    status.textContent = error.message;
    status.className = "feedback-status small bad";
  }
}

function pressed(buttons, chosen) {
  for (const b of buttons) b.setAttribute("aria-pressed", String(b === chosen));
}

function renderSources(turn, marks) {
  const list = turn.el.querySelector(".sources");
  if (!turn.sources.length) {
    list.replaceWith(h("p", {class: "sources muted"}, t("noSources")));
    return;
  }
  list.replaceChildren(...turn.sources.map((source, i) => {
    const n = i + 1;
    const open = h("button", {type: "button", class: "source-open", "data-n": n}, h("span", {class: "num"}, `[${n}]`),
                   " ", source.title || t("sourceNumber", n));
    open.addEventListener("click", () => openPassage(source, n, open));
    const up = h("button", {type: "button", class: "thumb up", "aria-label": t("relevant", n), title: t("relevant", n),
                            "aria-pressed": String(marks.get(source.chunk_id) === 1)}, thumb(false));
    const down = h("button", {type: "button", class: "thumb down", "aria-label": t("irrelevant", n),
                              title: t("irrelevant", n), "aria-pressed": String(marks.get(source.chunk_id) === -1)},
                   thumb(true));
    const mark = (value, button) => {
      if (marks.get(source.chunk_id) === value) {
        marks.delete(source.chunk_id);  // pressed again: unmarked
        pressed([up, down], null);
      } else {
        marks.set(source.chunk_id, value);
        pressed([up, down], button);
      }
      const ids = (v) => [...marks].filter(([, m]) => m === v).map(([id]) => id);
      sendFeedback(turn, {relevant_chunk_ids: ids(1), irrelevant_chunk_ids: ids(-1)});
    };
    up.addEventListener("click", () => mark(1, up));
    down.addEventListener("click", () => mark(-1, down));
    return h("li", {"data-chunk": source.chunk_id}, open, h("span", {class: "thumbs"}, up, down));
  }));
}

function renderRating(turn, feedback) {
  const rate = turn.el.querySelector(".rate");
  const up = h("button", {type: "button", class: "thumb up", "aria-label": t("helpful"), title: t("helpful"),
                          "aria-pressed": String((feedback?.rating ?? 0) > 0)}, thumb(false));
  const down = h("button", {type: "button", class: "thumb down", "aria-label": t("notHelpful"), title: t("notHelpful"),
                            "aria-pressed": String((feedback?.rating ?? 0) < 0)}, thumb(true));
  up.addEventListener("click", () => { pressed([up, down], up); sendFeedback(turn, {rating: 1}); });
  down.addEventListener("click", () => { pressed([up, down], down); sendFeedback(turn, {rating: -1}); });
  const box = h("textarea", {rows: 2, maxlength: 2000, id: `comment-${turn.requestId}`});
  box.value = feedback?.comment || "";
  const send = h("button", {type: "button", class: "send-comment"}, t("sendComment"));
  send.addEventListener("click", () => { if (box.value.trim()) sendFeedback(turn, {comment: box.value.trim()}); });
  rate.replaceChildren(
    h("div", {class: "rating", role: "group", "aria-label": t("rateAnswer")},
      h("span", {class: "muted small"}, t("rateAnswer")), up, down),
    h("details", {class: "comment"}, h("summary", {}, t("addComment")),
      h("label", {for: box.id}, t("comment")), box, send),
    h("p", {class: "feedback-status small", role: "status"}));
}

// A follow-up's mark: the standalone question it was answered as, shown on hover and on focus (CSS).
function showRewritten(mark, question) {
  mark.hidden = false;
  mark.dataset.tip = t("answeredAs", question);
  mark.setAttribute("aria-label", `${t("rewritten")}: ${question}`);
}

// A turn as the page holds it; `final` is the answer route's final event (or a stored turn).
function finish(turn, final) {
  turn.requestId = final.request_id;
  turn.el.dataset.requestId = final.request_id || "";
  turn.sources = final.sources || [];
  turn.numbers = new Map(turn.sources.map((s, i) => [s.chunk_id, i + 1]));
  const answer = turn.el.querySelector(".answer");
  answer.replaceChildren(...answerNodes(turn, final.answer || ""));
  answer.setAttribute("aria-busy", "false");
  answer.dataset.state = "done";
  if (final.rewritten_question) {
    const mark = turn.el.querySelector(".rewritten");
    showRewritten(mark, final.rewritten_question);
  }
  const extras = turn.el.querySelector(".extras");
  const degraded = (final.degraded_nodes || []).map((d) => d.node);
  extras.replaceChildren(...[renderPlan(turn, final.plan), renderDebate(turn, final.debate),
    degraded.length ? h("p", {class: "muted small"}, t("degraded", degraded.join(", "))) : null].filter(Boolean));
  const marks = new Map();
  for (const id of final.feedback?.relevant_chunk_ids || []) marks.set(id, 1);
  for (const id of final.feedback?.irrelevant_chunk_ids || []) marks.set(id, -1);
  renderSources(turn, marks);
  if (turn.requestId) renderRating(turn, final.feedback);
}

function newTurn(question) {
  $("empty").hidden = true;
  const el = h("li", {class: "turn"},
    h("div", {class: "q"},
      h("span", {class: "visually-hidden"}, `${t("youAsked")}: `),
      h("p", {class: "q-text"}, question),
      h("span", {class: "rewritten", role: "img", tabindex: "0", hidden: true}, "↻")),
    h("div", {class: "answer", "aria-busy": "true", "data-tokens": "0", "data-state": "streaming"}),
    h("p", {class: "turn-status muted small"}),
    h("div", {class: "extras"}),
    h("h3", {class: "small-heading"}, t("sources")),
    h("ol", {class: "sources"}),
    h("div", {class: "rate"}));
  $("turns").append(el);
  return {el, sources: [], numbers: new Map(), requestId: null};
}

function parseEvents(buffer, onEvent) {
  const blocks = buffer.split(/\r?\n\r?\n/);
  const rest = blocks.pop();
  for (const block of blocks) {
    let name = "message";
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (data.length) onEvent(name, JSON.parse(data.join("\n")));
  }
  return rest;
}

let conversationId = sessionStorage.getItem(CONVERSATION);

async function ensureConversation() {
  if (!conversationId) {
    conversationId = (await api("/api/v1/conversations", {method: "POST"})).id;
    sessionStorage.setItem(CONVERSATION, conversationId);
  }
  return conversationId;
}

function forgetConversation() {
  conversationId = null;
  sessionStorage.removeItem(CONVERSATION);
}

async function streamAnswer(turn, question, retried = false) {
  const response = await fetch("/api/v1/answer", {
    method: "POST",
    headers: {"Content-Type": "application/json", Accept: "text/event-stream",
              "X-API-Key": sessionStorage.getItem(KEY) || ""},
    body: JSON.stringify({q: question, stream: true, conversation_id: await ensureConversation(),
                          ...collectionFields($("collection").value)}),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) throw new Refused(body.detail || response.statusText);
    if (response.status === 404 && !retried && /conversation/.test(body.detail || "")) {
      // The conversation was deleted or pruned: start another.
      forgetConversation();
      turn.el.querySelector(".turn-status").textContent = t("expired");
      return streamAnswer(turn, question, true);
    }
    throw new Error(body.detail || `${response.status} ${response.statusText}`);
  }
  const answer = turn.el.querySelector(".answer");
  const status = turn.el.querySelector(".turn-status");
  let tokens = 0;
  const onEvent = (name, data) => {
    if (name === "token") {
      answer.append(data.text);
      answer.dataset.tokens = String(++tokens);
    } else if (name === "reset") {
      answer.replaceChildren();
    } else if (name === "round") {
      status.textContent = t("round", data.round);
    } else if (name === "rewritten") {
      showRewritten(turn.el.querySelector(".rewritten"), data.question);
    } else if (name === "final") {
      status.textContent = "";
      finish(turn, data);
    }
  };
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    buffer = parseEvents(buffer + decoder.decode(value, {stream: true}), onEvent);
  }
  parseEvents(buffer + decoder.decode() + "\n\n", onEvent);
}

let busy = false;

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || busy) return;
  busy = true;
  $("ask-button").disabled = true;
  $("ask-status").textContent = t("answering");
  const turn = newTurn(question);
  $("question").value = "";
  try {
    await streamAnswer(turn, question);
    $("ask-status").textContent = t("answered");
  } catch (error) {
    if (error instanceof Refused) {
      refuse(error.message);
    } else {
      turn.el.querySelector(".answer").replaceChildren(h("span", {class: "bad", role: "alert"}, t("failed", error.message)));
      turn.el.querySelector(".answer").setAttribute("aria-busy", "false");
      $("ask-status").textContent = "";
    }
  } finally {
    busy = false;
    $("ask-button").disabled = false;
    $("question").focus();
  }
}

async function restore() {
  $("turns").replaceChildren();
  $("empty").hidden = false;
  if (!conversationId) return;
  try {
    const conversation = await api(`/api/v1/conversations/${encodeURIComponent(conversationId)}`);
    for (const item of conversation.items) {
      const turn = newTurn(item.question);
      finish(turn, {...item, rewritten_question: item.rewritten});
    }
  } catch (error) {
    if (error instanceof Missing) forgetConversation();
    else throw error;
  }
}

// --- signing in -----------------------------------------------------------------------------------------

function showApp(on) {
  $("app").hidden = !on;
  $("tools").hidden = !on;
  $("login").hidden = on;
}

function refuse(message) {
  sessionStorage.removeItem(KEY);
  showApp(false);
  $("refusal").textContent = message ? t("refused", message) : "";
  $("login-key").focus();
}

async function start() {
  if (!sessionStorage.getItem(KEY)) return refuse("");
  try {
    await loadCollections();  // also checks the key
    showApp(true);
    await restore();
    $("question").focus();
  } catch (error) {
    if (error instanceof Refused) return refuse(error.message);
    showApp(false);
    $("refusal").textContent = error.message;
  }
}

translate();
$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("login-key").value.trim());
  $("login-key").value = "";
  $("refusal").textContent = "";
  start();
});
$("logout").addEventListener("click", () => { forgetConversation(); refuse(""); });
$("new-conversation").addEventListener("click", () => {
  forgetConversation();
  $("turns").replaceChildren();
  $("empty").hidden = false;
  $("question").focus();
});
$("ask-form").addEventListener("submit", ask);
$("question").addEventListener("keydown", (event) => {
  // Enter sends; Shift+Enter is a new line; an IME composing Korean keeps its Enter.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("ask-form").requestSubmit();
  }
});
$("passage").addEventListener("close", () => { if (returnFocus) returnFocus.focus(); returnFocus = null; });
start();
