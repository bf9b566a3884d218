"""A small bilingual corpus with known answers, for retrieval and ingestion tests."""

from apps.ingestion.documents import SourceDocument

CORPUS = [
    SourceDocument(
        external_id="ml",
        title="Machine learning",
        text="Machine learning is a field of artificial intelligence. Models learn patterns from training data. "
        "Supervised learning uses labelled examples.",
        taxonomy_path="tech/ai",
        metadata={"team": "research", "year": 2024},
    ),
    SourceDocument(
        external_id="db",
        title="Relational databases",
        text="PostgreSQL is a relational database. Indexes such as B-trees speed up queries on large tables.",
        taxonomy_path="tech/data",
        metadata={"team": "platform", "year": 2023},
    ),
    SourceDocument(
        external_id="bio",
        title="Vitamin D",
        text="Vitamin D deficiency is associated with bone loss. Sunlight exposure helps the skin produce vitamin D.",
        taxonomy_path="science/health",
        metadata={"team": "research", "year": 2022},
    ),
    SourceDocument(
        external_id="ko-ml",
        title="기계 학습",
        text="기계 학습은 인공지능의 한 분야이다. 모델은 훈련 데이터에서 패턴을 학습한다.",
        taxonomy_path="tech/ai",
        metadata={"team": "research", "year": 2024},
    ),
    SourceDocument(
        external_id="ko-history",
        title="세종대왕",
        text="세종대왕은 조선의 제4대 왕이다. 그는 1443년에 훈민정음을 창제하였다.",
        taxonomy_path="humanities/history",
        metadata={"team": "editorial", "year": 2021},
    ),
    SourceDocument(
        external_id="air",
        title="Air quality",
        text="Air pollution from fine dust harms the lungs. Cities monitor particulate matter every hour.",
        taxonomy_path="techno",
        metadata={"team": "platform", "year": 2024},
    ),
]


# Landmarks and a king, each with a maker and a date, so a follow-up ("who designed it?") has something to
# refer back to; the conversation and ask-page tests.
LANDMARKS = [
    SourceDocument(external_id="eiffel", title="Eiffel Tower", source_url="https://example.org/eiffel",
                   text="The Eiffel Tower is a wrought-iron lattice tower in Paris. It was built between 1887 and "
                        "1889 by the company of Gustave Eiffel, and it is 330 metres tall."),
    SourceDocument(external_id="liberty", title="Statue of Liberty",
                   text="The Statue of Liberty is a copper statue on Liberty Island in New York. It was built in "
                        "France and dedicated in 1886; Frédéric Bartholdi designed it."),
    SourceDocument(external_id="sejong", title="세종대왕",
                   text="세종대왕은 조선의 제4대 왕이다. 세종대왕은 1443년에 훈민정음을 창제하였다."),
]


def corpus() -> list[SourceDocument]:
    """Fresh copies, so a test may mutate them."""
    return [SourceDocument(**{**vars(d), "metadata": dict(d.metadata)}) for d in CORPUS]
