"""Tasks: the `Task` type, loaders for each dataset's native schema, and mixtures of sources."""

from flowsteer.tasks.loading import LoadResult, TaskFormatError, load_tasks, read_tasks
from flowsteer.tasks.mixture import TaskMixture
from flowsteer.tasks.sources import SOURCES, RecordError, register_source
from flowsteer.tasks.task import TASK_KINDS, Task, TaskFieldError, TaskKind

__all__ = [
    "SOURCES",
    "TASK_KINDS",
    "LoadResult",
    "RecordError",
    "Task",
    "TaskFieldError",
    "TaskFormatError",
    "TaskKind",
    "TaskMixture",
    "load_tasks",
    "read_tasks",
    "register_source",
]
