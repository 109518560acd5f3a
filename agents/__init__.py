"""Who takes part: participants (mesa agents), populations and how they are prompted."""

from agents.conversation import Message, RoundMemory
from agents.participant import Answer, Participant
from agents.population import ParticipantSpec, build_population

__all__ = ["Answer", "Message", "Participant", "ParticipantSpec", "RoundMemory", "build_population"]
