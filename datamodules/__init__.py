"""Lightning DataModules: the task stream of training and the held-out tasks per source."""

from datamodules.task_datamodule import TaskBatch, TaskDataModule, TaskFile

__all__ = ["TaskBatch", "TaskDataModule", "TaskFile"]
