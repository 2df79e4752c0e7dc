"""The Stacks pages: the stacks of every host one may see (status live), and one stack with its
editor, the diff before a deploy, the live run log and its services."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render

from containers.permissions import has_host_perm, permitted, visible_hosts
from stacks import external, services
from stacks.models import Stack, StackRun


@login_required
def stack_list(request):
    user = request.user
    hosts = list(visible_hosts(user).order_by("name"))
    external.sync_hosts([h.pk for h in hosts])
    stacks = list(permitted(user, Stack.objects.select_related("host")).order_by("host__name", "name"))
    services.attach_standings(stacks)
    rows = [{"stack": s, "standing": s._standing} for s in stacks]
    deployable = [h for h in hosts if has_host_perm(user, "deploy", h)]
    return render(request, "stacks/list.html", {"rows": rows, "deployable": deployable, "nav": "stacks"})


@login_required
def stack_detail(request, pk):
    stack = permitted(request.user, Stack.objects.select_related("host")).filter(pk=pk).first()
    if stack is None:
        raise Http404("No such stack.")
    runs = list(permitted(request.user, StackRun.objects.filter(stack=stack).select_related("actor"))[:20])
    can_deploy = has_host_perm(request.user, "deploy", stack.host)
    return render(request, "stacks/detail.html", {
        "stack": stack, "standing": services.standing(stack), "runs": runs, "nav": "stacks",
        "can_deploy": can_deploy,
        # The env file's values only for holders of `deploy` (as in the API).
        "env_text": stack.env if can_deploy else services.masked_env(stack.env),
    })
