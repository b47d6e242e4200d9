"""The fake's starting world: one Facebook user with two pages and their Lead Ads forms.

Ids are fixed so tests, docs and `make run` can name them.
"""

from __future__ import annotations

from sandbox.graph.models import Form, Page, Question, SandboxUser

USER_ID = "10158000000000001"
PAGE_ID = "104857600000001"
SECOND_PAGE_ID = "104857600000002"
FORM_ID = "780000000000001"
EBOOK_FORM_ID = "780000000000002"
ARCHIVED_FORM_ID = "780000000000003"
SECOND_PAGE_FORM_ID = "780000000000004"


def _q(key: str, label: str, type_: str, n: int) -> Question:
    return Question(key=key, label=label, type=type_, id=f"9100000000{n:05d}")


def seed_world() -> tuple[list[SandboxUser], list[Page], list[Form]]:
    user = SandboxUser(
        id=USER_ID,
        name="Renove Marketing",
        email="marketing@renove.example",
        page_ids=[PAGE_ID, SECOND_PAGE_ID],
    )
    pages = [
        Page(PAGE_ID, "Renove Consultoria", form_ids=[FORM_ID, EBOOK_FORM_ID, ARCHIVED_FORM_ID]),
        Page(
            SECOND_PAGE_ID, "Renove Imoveis", category="Imobiliaria", form_ids=[SECOND_PAGE_FORM_ID]
        ),
    ]
    forms = [
        Form(
            FORM_ID,
            PAGE_ID,
            "Captacao Site Principal",
            [
                _q("full_name", "Nome completo", "FULL_NAME", 1),
                _q("email", "E-mail", "EMAIL", 2),
                _q("phone_number", "Telefone", "PHONE", 3),
                _q("company_name", "Empresa", "COMPANY_NAME", 4),
                _q("job_title", "Cargo", "JOB_TITLE", 5),
                _q("city", "Cidade", "CITY", 6),
                _q("qual_o_seu_orcamento", "Qual o seu orcamento?", "CUSTOM", 7),
            ],
        ),
        Form(
            EBOOK_FORM_ID,
            PAGE_ID,
            "Ebook Marketing Digital",
            [_q("full_name", "Nome", "FULL_NAME", 8), _q("email", "E-mail", "EMAIL", 9)],
        ),
        Form(
            ARCHIVED_FORM_ID,
            PAGE_ID,
            "Campanha antiga",
            [_q("email", "E-mail", "EMAIL", 10)],
            status="ARCHIVED",
        ),
        Form(
            SECOND_PAGE_FORM_ID,
            SECOND_PAGE_ID,
            "Interesse em imovel",
            [_q("full_name", "Nome", "FULL_NAME", 11), _q("phone_number", "Telefone", "PHONE", 12)],
        ),
    ]
    return [user], pages, forms
