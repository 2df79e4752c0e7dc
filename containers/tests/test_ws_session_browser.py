"""A page whose session ends while it is open (headless Chromium against daphne)."""

from __future__ import annotations

import pytest

from containers.tests.browser import browser, live, login  # noqa: F401 (fixture)

pytestmark = [pytest.mark.trust, pytest.mark.slow]


def test_a_page_whose_password_changes_elsewhere_says_why_and_lands_on_the_login_page(browser, django_user_model, daphne, unique):  # noqa: F811
    """GIVEN a user's container list open and live
    WHEN their password is changed elsewhere
    THEN within seconds the page's socket is closed (4403) with the reason, the page shows it
    and reloads to the login page (the session no longer vouches for the user)."""
    user = django_user_model.objects.create_user(f"page{unique}", password="pw-page-123456")
    page, base = login(browser, daphne, user.username, "pw-page-123456")
    page.goto(f"{base}/containers/")
    live(page)

    user.set_password("pw-changed-elsewhere-9")
    user.save()
    page.wait_for_selector(".toast.bad:has-text('password was changed')", timeout=8_000)
    page.wait_for_url("**/login/**", timeout=10_000)
    page.context.close()
