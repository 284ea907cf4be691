"""Registration, passwords, and who a credential stands for now."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.errors import Conflict, Unauthenticated, ValidationFailed
from app.models import Role
from app.services import auth
from app.services.auth import Registration
from tests.support.factories import PASSWORD


def test_registration_makes_an_organization_its_owner_and_default_project(
    org: Registration,
) -> None:
    assert org.user.role is Role.OWNER
    assert org.project.name == auth.DEFAULT_PROJECT_NAME
    assert org.user.organization_id == org.project.organization_id == org.organization.id


def test_an_email_is_registered_once(session: Session, org: Registration) -> None:
    with pytest.raises(Conflict):
        auth.register(
            session, email=org.user.email.upper(), password=PASSWORD, organization_name="Again"
        )


def test_login_checks_the_password_and_normalises_the_email(
    session: Session, org: Registration
) -> None:
    assert auth.authenticate(session, email=f"  {org.user.email.upper()} ", password=PASSWORD)
    with pytest.raises(Unauthenticated, match="Invalid email or password"):
        auth.authenticate(session, email=org.user.email, password="wrong password")
    with pytest.raises(Unauthenticated, match="Invalid email or password"):
        auth.authenticate(session, email="nobody@example.com", password=PASSWORD)


def test_a_password_change_ends_the_sessions_before_it(session: Session, org: Registration) -> None:
    claims = auth.token_claims(org.user, family="f") | {"sub": str(org.user.id)}
    assert auth.actor_for_token(session, claims).user_id == org.user.id
    with pytest.raises(ValidationFailed):
        auth.change_password(
            session, user_id=org.user.id, current_password="nope", new_password="x" * 12
        )
    auth.change_password(
        session, user_id=org.user.id, current_password=PASSWORD, new_password="a new passphrase"
    )
    with pytest.raises(Unauthenticated, match="password was changed"):
        auth.actor_for_token(session, claims)


def test_an_api_key_is_split_into_prefix_and_secret() -> None:
    assert auth.split_api_key("tf_abc123_secret_part") == ("abc123", "secret_part")
    assert auth.split_api_key("tk_abc_x") is None
    assert auth.split_api_key("tf__secret") is None
