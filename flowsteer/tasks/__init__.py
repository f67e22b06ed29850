"""Tasks: the `Task` type, loaders for each dataset's native schema, and mixtures of sources."""

from flowsteer.tasks.task import TASK_KINDS, Task, TaskKind

__all__ = ["TASK_KINDS", "Task", "TaskKind"]
