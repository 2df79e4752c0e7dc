from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import authenticate
from django.utils import timezone
from rest_framework import serializers

from accounts.models import APIToken


class APITokenSerializer(serializers.ModelSerializer):
    prefix = serializers.CharField(read_only=True)
    expires_in_days = serializers.IntegerField(write_only=True, required=False, min_value=1, max_value=3650)

    class Meta:
        model = APIToken
        fields = ["id", "name", "prefix", "read_only", "created_at", "expires_at", "last_used_at", "revoked_at", "expires_in_days"]
        read_only_fields = ["created_at", "expires_at", "last_used_at", "revoked_at"]

    def create(self, validated_data):
        days = validated_data.pop("expires_in_days", None)
        expires_at = timezone.now() + timedelta(days=days) if days else None
        token, raw = APIToken.issue(
            self.context["request"].user,
            name=validated_data.get("name") or "default",
            expires_at=expires_at,
            read_only=validated_data.get("read_only", False),
        )
        token.raw = raw
        return token

    def to_representation(self, instance):
        data = super().to_representation(instance)
        raw = getattr(instance, "raw", None)
        if raw:
            data["token"] = raw
        return data


class TokenObtainSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(write_only=True, style={"input_type": "password"}, trim_whitespace=False)
    name = serializers.CharField(required=False, max_length=100, default="api")
    expires_in_days = serializers.IntegerField(required=False, min_value=1, max_value=3650)
    read_only = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        user = authenticate(self.context.get("request"), username=attrs["username"], password=attrs["password"])
        if user is None or not user.is_active:
            raise serializers.ValidationError({"non_field_errors": ["Unable to log in with the given credentials."]})
        attrs["user"] = user
        return attrs

    def create(self, validated_data):
        days = validated_data.get("expires_in_days")
        token, raw = APIToken.issue(
            validated_data["user"],
            name=validated_data.get("name") or "api",
            expires_at=timezone.now() + timedelta(days=days) if days else None,
            read_only=validated_data.get("read_only", False),
        )
        token.raw = raw
        return token
