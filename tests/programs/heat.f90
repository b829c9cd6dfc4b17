! Fortran names as their users write them (tests/cli/fortran.rs). Ground truth: the
! same relaxation sweep runs 5 parts of the iterations in the module procedure
! heat::relax, 3 in the program's contained procedure smooth and 2 in the external
! procedure sweep: shares 50%, 30%, 20%. Interleaved, in rounds of 1-3 units in a fixed
! pseudo-random order (as hot.c): one after the other, a change in the machine's load
! between them moved the shares (44/26/29 in a fresh-clone run); rounds of one length
! alias with the sampling period.
module heat
  implicit none
contains
  subroutine relax(u, n, iters)
    integer, intent(in) :: n, iters
    real(8), intent(inout) :: u(n)
    integer :: it, i
    do it = 1, iters
      do i = 2, n - 1
        u(i) = 0.5d0 * (u(i - 1) + u(i + 1))
      end do
    end do
  end subroutine relax
end module heat

subroutine sweep(u, n, iters)
  implicit none
  integer, intent(in) :: n, iters
  real(8), intent(inout) :: u(n)
  integer :: it, i
  do it = 1, iters
    do i = 2, n - 1
      u(i) = 0.5d0 * (u(i - 1) + u(i + 1))
    end do
  end do
end subroutine sweep

program solver
  use heat
  implicit none
  real(8), allocatable :: u(:)
  integer :: n, reps, r, k
  integer(8) :: x
  character(len=32) :: arg
  n = 10000
  reps = 100
  if (command_argument_count() > 0) then
    call get_command_argument(1, arg)
    read (arg, *) reps
  end if
  allocate (u(n))
  u = 1.0d0
  u(1) = 0.0d0
  x = 1
  do r = 1, reps
    x = modulo(x * 1103515245_8 + 12345_8, 2147483648_8)
    k = 1 + int(modulo(x / 65536_8, 3_8))
    call relax(u, n, 5 * k)
    call smooth(u, n, 3 * k)
    call sweep(u, n, 2 * k)
  end do
  print *, u(n / 2)
contains
  subroutine smooth(v, m, iters)
    integer, intent(in) :: m, iters
    real(8), intent(inout) :: v(m)
    integer :: it, i
    do it = 1, iters
      do i = 2, m - 1
        v(i) = 0.5d0 * (v(i - 1) + v(i + 1))
      end do
    end do
  end subroutine smooth
end program solver
